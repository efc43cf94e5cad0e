"""Recorder sinks: raw venue archives, Parquet event shards, and a ClickHouse table.

- :class:`RawSink`: each frame in the venue's own daily archive format, one file per
  symbol and UTC day: Bybit ``YYYY-MM-DD_<SYMBOL>_ob<depth>.data`` (NDJSON, the frames
  unchanged, as Bybit publishes them; trades in ``YYYY-MM-DD_<SYMBOL>_publicTrade.ndjson``),
  Binance ``<SYMBOL>_<YYYYMMDD>.gz`` (``<recv_ns> <json>`` lines, one gzip member per flush;
  REST snapshots included). Files are appended at each flush; on first use in a process a
  torn end (a partial line or gzip member left by a kill) is cut.
- :class:`ParquetSink`: the events (:mod:`quantnb.record._events`; stored one row per frame,
  ``FRAME_SCHEMA``, read back one row per level by :func:`read_events`) in shards written
  atomically at each flush; a restarted recorder writes new shards.
- :class:`ClickHouseSink`: the shards inserted into a MergeTree table ``<table>_frames``
  (same layout), with the view ``<table>`` giving one row per level (``EVENT_SCHEMA``);
  embedded chDB or a server through clickhouse-connect; idempotent (a shard already in the
  table is skipped; each insert carries the shard as deduplication token).
"""

from __future__ import annotations

import datetime as dt
import os
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import polars as pl
from loguru import logger

from quantnb.record._events import (
    BINANCE_DEPTH,
    BINANCE_SNAPSHOT,
    BYBIT_BOOK,
    EVENT_SCHEMA,
    BookColumns,
    events_frame,
    events_from_frames,
    frames_from_events,
)
from quantnb.runs import atomic_path

__all__ = ["RawSink", "ParquetSink", "repair_raw_file"]

_DECODED = (BYBIT_BOOK, BINANCE_DEPTH)  # kinds whose decoded frames are kept as columns (BookColumns)
_NS_PER_DAY = 86_400 * 10**9
_MS_PER_DAY = 86_400_000


def _day(ms: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=ms // _MS_PER_DAY)


def _gzip_good_length(path: Path) -> int:
    """Byte length of the complete gzip members at the start of ``path``."""
    good = pos = 0
    d = zlib.decompressobj(31)
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                data = chunk
                while data:
                    d.decompress(data, 1 << 22)
                    while d.unconsumed_tail and not d.eof:
                        d.decompress(d.unconsumed_tail, 1 << 22)
                    if d.eof:
                        pos += len(data) - len(d.unused_data)
                        good = pos
                        data = d.unused_data
                        d = zlib.decompressobj(31)
                    else:
                        pos += len(data)
                        data = b""
    except zlib.error:
        pass
    return good


def repair_raw_file(path: Path) -> int:
    """Cut a torn end off a raw file (a partial last line, or a partial gzip member); return bytes cut."""
    if not path.exists():
        return 0
    size = path.stat().st_size
    if not size:
        return 0
    if path.name.endswith(".gz"):
        keep = _gzip_good_length(path)
    else:
        with open(path, "rb") as fh:
            fh.seek(max(0, size - (1 << 16)))
            tail = fh.read()
        if tail.endswith(b"\n"):
            return 0
        nl = tail.rfind(b"\n")
        if nl < 0:  # one partial line longer than the window: scan the whole file
            keep = path.read_bytes().rfind(b"\n") + 1
        else:
            keep = size - len(tail) + nl + 1
    if keep < size:
        with open(path, "r+b") as fh:
            fh.truncate(keep)
        logger.warning("{}: cut a torn end of {} byte(s) left by an earlier kill; the file now ends in whole "
                       "{}", path, size - keep, "gzip members" if path.name.endswith(".gz") else "lines")
    return size - keep


class RawSink:
    """Append frames to the venue's daily archive files under ``root``."""

    name = "raw"

    def __init__(self, root: Path, venue: str, depth: int) -> None:
        self.root = root
        self.venue = venue
        self.depth = depth
        root.mkdir(parents=True, exist_ok=True)
        self._buf: dict[Path, list[bytes]] = defaultdict(list)
        self._names: dict[tuple[str, str, int], Path] = {}
        self._checked: set[Path] = set()
        self.bytes = 0
        self.files: set[str] = set()

    def _path(self, kind: str, symbol: str, day_key: int) -> Path:
        key = (kind, symbol, day_key)
        p = self._names.get(key)
        if p is None:
            if self.venue == "bybit":
                day = _day(day_key * _MS_PER_DAY).isoformat()
                tail = f"ob{self.depth}.data" if kind == BYBIT_BOOK else "publicTrade.ndjson"
                p = self.root / f"{day}_{symbol}_{tail}"
            else:
                day = _day(day_key * _MS_PER_DAY).strftime("%Y%m%d")
                p = self.root / f"{symbol}_{day}.gz"
            self._names[key] = p
        return p

    def write(self, kind: str, symbol: str, recv_ns: int, exch_ms: int, text: bytes, decoded: Any = None) -> None:
        """Buffer one frame; Bybit files roll on the frame's exchange day, Binance on the receive day."""
        if self.venue == "bybit":
            self._buf[self._path(kind, symbol, exch_ms // _MS_PER_DAY)].append(text)
        else:
            self._buf[self._path("binance", symbol, recv_ns // _NS_PER_DAY)].append(b"%d %s" % (recv_ns, text))

    @property
    def pending(self) -> int:
        """Lines buffered for the next flush."""
        return sum(len(v) for v in self._buf.values())

    def flush(self) -> int:
        """Append the buffered lines to their files; return bytes written.

        A file whose write fails (disk full, I/O error) is cut back to its size before the write
        (whole lines, gzip members) and keeps its lines for the next flush, so each frame lands in
        its file exactly once; after trying every file, OSError names the one that failed.
        """
        written = 0
        kept: dict[Path, list[bytes]] = {}
        errors: list[str] = []
        first: OSError | None = None
        for path, lines in self._buf.items():
            if not lines:
                continue
            try:
                if path not in self._checked:
                    repair_raw_file(path)
                    self._checked.add(path)
                data = b"\n".join(lines) + b"\n"
                if path.name.endswith(".gz"):
                    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
                    data = comp.compress(data) + comp.flush()
                self._append(path, data)
            except OSError as exc:
                kept[path] = lines
                first = first or exc
                errors.append(f"{path}: {exc.strerror or exc} ({len(lines)} frame(s) kept for the next flush)")
                continue
            written += len(data)
            self.files.add(str(path))
        self._buf = defaultdict(list, kept)
        self.bytes += written
        if first is not None:
            raise OSError(first.errno, "raw sink write failed: " + "; ".join(errors)) from first
        return written

    _write = staticmethod(os.write)  # the one write call (a test injects a full disk here)

    def _append(self, path: Path, data: bytes) -> None:
        """Append ``data`` whole or not at all: a failed or short write is truncated back to the old end."""
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            start = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[self._write(fd, view):]
            except OSError:
                try:
                    os.ftruncate(fd, start)
                except OSError:  # cannot roll back: the next flush cuts the torn end first
                    self._checked.discard(path)
                raise
        finally:
            os.close(fd)

    def close(self) -> None:
        self.flush()


class ParquetSink:
    """Normalized events in Parquet shards ``<root>/<prefix>_<n>.parquet``, one per flush.

    ``prefix`` is unique per recorder process, so a restarted recorder never overwrites a shard.
    """

    name = "parquet"

    def __init__(self, root: Path, venue: str, market: str, prefix: str) -> None:
        self.root = root
        self.venue, self.market, self.prefix = venue, market, prefix
        root.mkdir(parents=True, exist_ok=True)
        for tmp in root.glob(".*.parquet.*.tmp"):  # a shard a killed recorder was writing: never complete
            logger.warning("Removing {}: a shard left incomplete by an earlier kill", tmp)
            tmp.unlink(missing_ok=True)
        self._recv: dict[str, list[int]] = defaultdict(list)
        self._text: dict[str, list[bytes]] = defaultdict(list)
        self._cols: dict[str, BookColumns] = {}
        self._sym: list[str] = []
        self.n = 0
        self.bytes = 0
        self.rows = 0
        self.pending = 0

    def write(self, kind: str, symbol: str, recv_ns: int, exch_ms: int, text: bytes, decoded: Any = None) -> None:
        """Buffer one frame until the next flush (a book frame the client decoded is buffered as columns)."""
        self.pending += 1
        if decoded is not None and kind in _DECODED:
            cols = self._cols.get(kind)
            if cols is None:
                cols = self._cols[kind] = BookColumns(kind)
            cols.add(recv_ns, decoded)
            return
        self._recv[kind].append(recv_ns)
        self._text[kind].append(text)
        if kind == BINANCE_SNAPSHOT:
            self._sym.append(symbol)

    def detach(self) -> tuple | None:
        """Take the buffered frames (in the recording thread) as one batch with its shard name; None if empty."""
        if not self.pending:
            return None
        batch = (f"{self.prefix}_{self.n:06d}", self._recv, self._text, self._sym, self._cols, self.pending)
        self._recv, self._text, self._sym, self._cols = defaultdict(list), defaultdict(list), [], {}
        self.pending = 0
        self.n += 1
        return batch

    def restore(self, batch: tuple) -> None:
        """Put back a batch whose write failed, before the frames buffered since (the next shard holds both)."""
        _, recv, text, sym, cols, pending = batch
        recv, text = defaultdict(list, {k: list(v) for k, v in recv.items()}), \
            defaultdict(list, {k: list(v) for k, v in text.items()})
        for k in self._text:
            recv[k].extend(self._recv[k])
            text[k].extend(self._text[k])
        merged: dict[str, BookColumns] = {}
        for k in {*cols, *self._cols}:
            # new accumulators, copied: the failed write may still export the batch's buffers (numpy views),
            # and an exported array cannot grow (BufferError)
            m = merged[k] = BookColumns(k)
            for part in (cols.get(k), self._cols.get(k)):
                if part is not None:
                    m.extend(part)
        self._recv, self._text, self._sym, self._cols = recv, text, sym + self._sym, merged
        self.pending += pending

    def write_batch(self, batch: tuple) -> tuple[Path, int, int]:
        """Build a detached batch's rows and write them as one shard atomically (any thread)."""
        shard, recv, text, sym, cols, n_frames = batch
        frames = [c.frame(venue=self.venue, market=self.market, shard=shard) for c in cols.values() if len(c)]
        frames += [frames_from_events(events_frame(k, recv[k], text[k], venue=self.venue, market=self.market,
                                                   symbols=sym if k == BINANCE_SNAPSHOT else None, shard=shard,
                                                   frame_index=True))
                   for k in text if text[k]]
        table = pl.concat(frames).sort("recv_ns", maintain_order=True) if len(frames) > 1 else frames[0]
        rows = int(table["price"].list.len().sum())
        path = self.root / f"{shard}.parquet"
        with atomic_path(path) as tmp:
            # no column statistics: a shard is one flush, read whole (ClickHouse, read_events); they
            # cost ~1 us per frame (a quarter of the write) for pruning nothing
            table.write_parquet(tmp, compression="zstd", compression_level=1, statistics=False)
        self.rows += rows
        self.bytes += path.stat().st_size
        return path, rows, n_frames

    def flush(self) -> tuple[Path, int, int] | None:
        """Write the buffered frames as one shard atomically; return ``(path, events, frames)`` or None if empty."""
        batch = self.detach()
        return None if batch is None else self.write_batch(batch)

    def close(self) -> None:
        pass


def read_events(shard_dir: Path) -> pl.DataFrame:
    """Read every Parquet shard of ``shard_dir`` as events (one row per level or trade), in shard order.

    Parameters
    ----------
    shard_dir : pathlib.Path
        The folder of Parquet shards.

    Returns
    -------
    polars.DataFrame
        Schema ``EVENT_SCHEMA``; empty when the folder holds no shard.
    """
    paths = sorted(shard_dir.glob("*.parquet"))
    if not paths:
        return pl.DataFrame(schema=EVENT_SCHEMA)
    return events_from_frames(pl.concat([pl.read_parquet(p) for p in paths]))


__all__ += ["read_events"]
