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
import time
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import polars as pl
from loguru import logger

from quantnb.errors import ConfigError
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
from quantnb.runlog import atomic_path

__all__ = ["RawSink", "ParquetSink", "ClickHouseSink", "repair_raw_file", "TABLE_DDL"]

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
    """Cut a torn end off a raw file (a partial last line, or a partial gzip member); return bytes cut.

    Parameters
    ----------
    path : pathlib.Path
        A raw file (``.gz`` or plain text); a missing or empty file is left alone.
    """
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
    """Append frames to the venue's daily archive files under ``root``.

    Parameters
    ----------
    root : pathlib.Path
        Folder of the files (created).
    venue : {"bybit", "binance"}
    depth : int
        Bybit book depth in the file name (``ob<depth>``).
    """

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
        """Buffer one frame; Bybit files roll on the frame's exchange day, Binance on the receive day.

        Parameters
        ----------
        kind : str
            Frame kind (``BYBIT_BOOK``, ``BYBIT_TRADE``, ``BINANCE_DEPTH``, ``BINANCE_TRADE``,
            ``BINANCE_BBO`` or ``BINANCE_SNAPSHOT``).
        symbol : str
            Exchange symbol, e.g. ``BTCUSDT``.
        recv_ns : int
            Local receive time, nanoseconds since the Unix epoch (UTC).
        exch_ms : int
            Exchange timestamp, milliseconds since the Unix epoch (Bybit frames); 0 for Binance frames.
        text : bytes
            The frame exactly as received (for a snapshot, the REST response body).
        decoded : Any, optional
            The client's decoded form of a book frame (``BybitBookMsg`` or the ETL's depth event), if any.
        """
        if self.venue == "bybit":
            self._buf[self._path(kind, symbol, exch_ms // _MS_PER_DAY)].append(text)
        else:
            self._buf[self._path("binance", symbol, recv_ns // _NS_PER_DAY)].append(b"%d %s" % (recv_ns, text))

    def flush(self) -> int:
        """Append the buffered lines to their files; return bytes written."""
        written = 0
        for path, lines in self._buf.items():
            if not lines:
                continue
            if path not in self._checked:
                repair_raw_file(path)
                self._checked.add(path)
            lines.append(b"")
            data = b"\n".join(lines)
            if path.name.endswith(".gz"):
                comp = zlib.compressobj(1, zlib.DEFLATED, 31)
                data = comp.compress(data) + comp.flush()
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            written += len(data)
            self.files.add(str(path))
        self._buf = defaultdict(list)
        self.bytes += written
        return written

    def close(self) -> None:
        self.flush()


class ParquetSink:
    """Normalized events in Parquet shards ``<root>/<prefix>_<n>.parquet``, one per flush.

    Parameters
    ----------
    root : pathlib.Path
        Shard folder (created).
    venue, market : str
        Written in every row.
    prefix : str
        Shard name prefix, unique per recorder process (e.g. run id, start time and pid),
        so a restarted recorder never overwrites an earlier shard.
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
        """Buffer one frame until the next flush (a book frame the client decoded is buffered as columns).

        Parameters
        ----------
        kind : str
            Frame kind (``BYBIT_BOOK``, ``BYBIT_TRADE``, ``BINANCE_DEPTH``, ``BINANCE_TRADE``,
            ``BINANCE_BBO`` or ``BINANCE_SNAPSHOT``).
        symbol : str
            Exchange symbol, e.g. ``BTCUSDT``.
        recv_ns : int
            Local receive time, nanoseconds since the Unix epoch (UTC).
        exch_ms : int
            Exchange timestamp, milliseconds since the Unix epoch (Bybit frames); 0 for Binance frames.
        text : bytes
            The frame exactly as received (for a snapshot, the REST response body).
        decoded : Any, optional
            The client's decoded form of a book frame (``BybitBookMsg`` or the ETL's depth event), if any.
        """
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
        """Take the buffered frames (in the recording thread) as one batch with its shard name; None if empty.

        Returns
        -------
        tuple or None
            ``(shard, recv_ns per kind, frames per kind, snapshot symbols, BookColumns per kind, n_frames)``.
        """
        if not self.pending:
            return None
        batch = (f"{self.prefix}_{self.n:06d}", self._recv, self._text, self._sym, self._cols, self.pending)
        self._recv, self._text, self._sym, self._cols = defaultdict(list), defaultdict(list), [], {}
        self.pending = 0
        self.n += 1
        return batch

    def restore(self, batch: tuple) -> None:
        """Put back a batch whose write failed, before the frames buffered since (the next shard holds both).

        Parameters
        ----------
        batch : tuple
            A batch from :meth:`detach`.
        """
        _, recv, text, sym, cols, pending = batch
        for k in text:
            recv[k].extend(self._recv.get(k, []))
            text[k].extend(self._text.get(k, []))
        for k in self._text:
            if k not in text:
                recv[k], text[k] = self._recv[k], self._text[k]
        for k, c in self._cols.items():
            if k in cols:
                cols[k].extend(c)
            else:
                cols[k] = c
        self._recv, self._text, self._sym, self._cols = recv, text, sym + self._sym, cols
        self.pending += pending

    def write_batch(self, batch: tuple) -> tuple[Path, int, int]:
        """Build a detached batch's rows and write them as one shard atomically (any thread).

        The shard stores one row per frame (``FRAME_SCHEMA``); :func:`read_events` gives one
        row per level or trade.

        Parameters
        ----------
        batch : tuple
            A batch from :meth:`detach`.

        Returns
        -------
        tuple of (pathlib.Path, int, int)
            The shard, its number of events (rows of :func:`read_events`) and of frames.
        """
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


TABLE_DDL = """CREATE TABLE IF NOT EXISTS {table}_frames (
    recv_ns Int64, exch_ms Int64, venue LowCardinality(String), market LowCardinality(String),
    symbol LowCardinality(String), channel LowCardinality(String), type LowCardinality(String),
    update_id Nullable(Int64), seq Nullable(Int64), side LowCardinality(Nullable(String)), n_bids UInt32,
    price Array(Float64), size Array(Float64), trade_id Nullable(String), shard LowCardinality(String)
) ENGINE = MergeTree
PARTITION BY toDate(intDiv(recv_ns, 1000000000))
ORDER BY (symbol, recv_ns)
SETTINGS non_replicated_deduplication_window = 10000, min_rows_for_wide_part = 4000000,
    min_bytes_for_wide_part = 1000000000"""

# One row per level or trade, EVENT_SCHEMA's columns, over the stored frames.
VIEW_DDL = """CREATE VIEW IF NOT EXISTS {table} AS
SELECT recv_ns, exch_ms, venue, market, symbol, channel, type, update_id, seq,
    if(channel = 'trade', side, if(k <= n_bids, 'bid', 'ask')) AS side, price, size, trade_id, shard
FROM {table}_frames ARRAY JOIN price, size, arrayEnumerate(price) AS k"""


def clickhouse_server_client(url: str, name: str = "clickhouse_url") -> Any:
    """Return a clickhouse-connect client for ``http(s)://user@host:port/database``.

    Parameters
    ----------
    url : str
        The server; the password comes from ``CLICKHOUSE_PASSWORD`` only.
    name : str
        The parameter that gave ``url``, quoted in the error.

    Returns
    -------
    clickhouse_connect.driver.Client

    Raises
    ------
    ConfigError
        If ``url`` carries a password.
    """
    import clickhouse_connect

    u = urlsplit(url)
    if u.password:
        raise ConfigError(f"{name}={u.scheme}://{u.username}:***@{u.hostname}: put no password in the URL; set the "
                          "CLICKHOUSE_PASSWORD environment variable")
    return clickhouse_connect.get_client(
        host=u.hostname or "localhost", port=u.port or (8443 if u.scheme == "https" else 8123),
        username=u.username or "default", password=os.environ.get("CLICKHOUSE_PASSWORD", ""),
        secure=u.scheme == "https", database=(u.path.strip("/") or "default"))


class ClickHouseSink:
    """Insert Parquet shards into a ClickHouse MergeTree table, once each.

    The shards' rows (one per frame) go into the MergeTree table ``<table>_frames``; the view
    ``<table>`` gives one row per level or trade, the columns of ``EVENT_SCHEMA``.

    Parameters
    ----------
    url : str or None
        ``None``: embedded chDB with its data under ``path``. Otherwise a server URL
        ``http(s)://user@host:port/database`` for clickhouse-connect; the password comes
        from the environment variable ``CLICKHOUSE_PASSWORD`` only.
    path : pathlib.Path
        chDB data folder (embedded only).
    table : str
        ``database.name`` of the events view; the MergeTree table is ``<table>_frames`` (both
        created if missing).
    retries : int
        Attempts per insert before the shard is left in Parquet for backfill.

    Attributes
    ----------
    inserted, rows : int
        Shards and events (rows of the view) inserted by this process.
    backlog : list of str
        Shards that failed every attempt (they stay in Parquet; :meth:`backfill` retries).
    """

    name = "clickhouse"

    def __init__(self, url: str | None, path: Path, table: str = "quantnb.book_events", retries: int = 3,
                 retry_wait_s: float = 0.5) -> None:
        self.url, self.path, self.table = url, path, table
        self.retries, self.retry_wait_s = retries, retry_wait_s
        self.inserted = self.rows = 0
        self.bytes = 0
        self.backlog: list[str] = []
        # shards known to be in the table: read once (first insert), then kept up to date by this
        # process, so an insert does not scan the whole shard column (a cost growing with the table)
        self._known: set[str] | None = None
        db = table.split(".")[0] if "." in table else "default"
        if url is None:
            import chdb.session

            path.mkdir(parents=True, exist_ok=True)
            self._session = chdb.session.Session(str(path))
            self._client = None
        else:
            self._session = None
            self._client = clickhouse_server_client(url)
        self._exec(f"CREATE DATABASE IF NOT EXISTS {db}")
        name = table.split(".")[-1]
        found = f"SELECT engine FROM system.tables WHERE database = '{db}' AND name = '{name}'"
        engine = str(self._exec(found)).strip().strip('"')  # chDB's CSV quotes it
        if engine and engine != "View":
            raise ConfigError(f"ClickHouse {table} is a {engine} table, not the events view of {table}_frames "
                              "(a table of an earlier quantnb layout?): set clickhouse_table to a new name, or "
                              f"rename {table} in ClickHouse")
        self._exec(TABLE_DDL.format(table=table))
        self._exec(VIEW_DDL.format(table=table))

    def _exec(self, sql: str) -> Any:
        if self._session is not None:
            return self._session.query(sql, "CSV")
        return self._client.command(sql)

    def _scalar(self, sql: str) -> int:
        if self._session is not None:
            return int(str(self._session.query(sql, "CSV")).strip() or 0)
        return int(self._client.command(sql))

    def shards_in_table(self) -> set[str]:
        """Return the shard names already in the table."""
        if self._session is not None:
            out = str(self._session.query(f"SELECT DISTINCT shard FROM {self.table}_frames", "TSV")).split()
            return set(out)
        return {r[0] for r in self._client.query(f"SELECT DISTINCT shard FROM {self.table}_frames").result_rows}

    def insert_shard(self, path: Path, events: int | None = None) -> bool:
        """Insert one shard unless the table holds it already; retry, else leave it for backfill.

        Parameters
        ----------
        path : pathlib.Path
            A Parquet shard written by :class:`ParquetSink`; its stem is the shard name.
        events : int, optional
            Its number of events (rows of the view), if known; else counted from the file.

        Returns
        -------
        bool
            True if the shard is in the table now (inserted or already there).
        """
        shard = path.stem
        last: Exception | None = None
        for attempt in range(1, self.retries + 1):
            try:
                if self._known is None:
                    self._known = self.shards_in_table()
                # after a failed attempt the insert may have landed all the same: ask the table itself
                if shard in self._known or (last is not None and self._scalar(
                        f"SELECT count() FROM {self.table}_frames WHERE shard = '{shard}'")):
                    logger.debug("ClickHouse already holds shard {}; not inserted again", shard)
                    self._known.add(shard)
                    return True
                if self._session is not None:
                    self._session.query(
                        f"INSERT INTO {self.table}_frames SETTINGS insert_deduplication_token = '{shard}', "
                        f"max_insert_block_size = 100000000, min_insert_block_size_rows = 100000000 "
                        f"SELECT * FROM file('{path.resolve()}', Parquet)", "CSV")
                    n = events if events is not None else int(
                        pl.scan_parquet(path).select(pl.col("price").list.len().sum()).collect().item())
                else:
                    table = pl.read_parquet(path)
                    self._client.insert_arrow(f"{self.table}_frames", table.to_arrow(),
                                              settings={"insert_deduplication_token": shard})
                    n = int(table["price"].list.len().sum())
                self._known.add(shard)
                self.inserted += 1
                self.rows += n
                self.bytes += path.stat().st_size
                return True
            except Exception as exc:  # noqa: BLE001 - any driver error: retry, then backlog
                last = exc
                logger.warning("ClickHouse insert of shard {} failed (attempt {}/{}): {}: {}", shard, attempt,
                               self.retries, type(exc).__name__, exc)
                time.sleep(self.retry_wait_s * attempt)
        logger.error("ClickHouse insert of shard {} failed {} times ({}); its events stay in {} and are listed "
                     "for backfill", shard, self.retries, last, path)
        if shard not in self.backlog:
            self.backlog.append(shard)
        return False

    def backfill(self, shard_dir: Path) -> list[str]:
        """Insert every shard of ``shard_dir`` the table lacks (e.g. after a kill or failed inserts).

        Parameters
        ----------
        shard_dir : pathlib.Path
            The folder of Parquet shards.

        Returns
        -------
        list of str
            The shard names inserted now; a shard that fails all retries stays in ``backlog``.
        """
        have = self._known = self.shards_in_table()
        done = []
        for path in sorted(shard_dir.glob("*.parquet")):
            if path.stem not in have and self.insert_shard(path):
                done.append(path.stem)
                if path.stem in self.backlog:
                    self.backlog.remove(path.stem)
        if done:
            logger.info("ClickHouse backfill: inserted {} shard(s) missing from {}", len(done), self.table)
        return done

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        if self._client is not None:
            self._client.close()


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


__all__ += ["read_events", "VIEW_DDL"]
