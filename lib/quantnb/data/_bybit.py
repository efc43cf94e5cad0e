"""Bybit v5 order-book files (``YYYY-MM-DD_SYMBOL_obN.data[.zip]``): snapshot + deltas to 1-minute book bars.

Rules (Bybit v5 API docs, "WebSocket Stream > Public > Orderbook"): a ``snapshot`` replaces
the local book; each ``delta`` sets the listed levels, size ``"0"`` deleting one; the update
id ``u`` rises by 1 from message to message; a ``snapshot`` may also arrive mid-stream
(``u=1`` after a service restart) and must reset the book. A break in ``u`` is counted and
deltas are skipped (counted) until the next snapshot.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import msgspec
import polars as pl
from loguru import logger

from quantnb.data._bars import MINUTE_MS, BookMinutes
from quantnb.data._book import OrderBook
from quantnb.data._io import IO_ERRORS, io_error, no_messages, open_lines
from quantnb.data._quality import QualityReport
from quantnb.data._validate import Price, Size, clean_levels, crossed_ok, strict_decode
from quantnb.errors import DataError

GAP_MS = 2 * MINUTE_MS


class _Data(msgspec.Struct, gc=False):
    s: str
    b: list[tuple[Price, Size]]
    a: list[tuple[Price, Size]]
    u: int


class _Msg(msgspec.Struct, gc=False):
    type: Literal["snapshot", "delta"]
    ts: int
    data: _Data


class _LooseData(msgspec.Struct):
    s: str
    b: list[tuple[float, float]]
    a: list[tuple[float, float]]
    u: int


class _LooseMsg(msgspec.Struct):
    type: str
    ts: int
    data: _LooseData


_DECODE = msgspec.json.Decoder(_Msg, strict=False).decode
_DECODE_LOOSE = msgspec.json.Decoder(_LooseMsg, strict=False).decode


def _slow(path: Path, line: int, raw: bytes, exc: Exception, report: QualityReport) -> _Msg | None:
    """Re-read a line the fast decoder refused: blank, bad JSON, bad layout, or bad values."""
    if not raw.strip():
        report.flag("blank_lines", line, "blank line skipped")
        return None
    loose = strict_decode(_DECODE_LOOSE, path, line, raw)
    if loose.type not in ("snapshot", "delta"):
        report.flag("unsupported_messages", line, f"message type {loose.type!r} is not snapshot/delta; skipped")
        return None
    d = loose.data
    bids = clean_levels(d.b, "bid", path, line, report)
    asks = clean_levels(d.a, "ask", path, line, report)
    return _Msg(loose.type, loose.ts, _Data(d.s, bids, asks, d.u))  # type: ignore[arg-type]


def read_bybit(path: Path, report: QualityReport, *, skip_until_snapshot: bool = False, on_crossed: str = "raise",
               on_progress: Callable[[int], None] | None = None) -> tuple[str, pl.DataFrame, OrderBook]:
    """Replay a Bybit order-book file; return its symbol, per-minute book rows and the final book.

    ``skip_until_snapshot`` skips (and counts) deltas before the first snapshot instead of raising
    (files truncated at the start); ``on_crossed="skip"`` counts a crossed book and leaves the
    update out of the features. Bybit v5 WebSocket "Orderbook" topic: a snapshot resets the book,
    deltas carry absolute sizes (0 deletes a level) and the update id ``u`` (``u=1`` after a
    service restart).
    """
    book = OrderBook()
    bars = BookMinutes(book, report)
    roll, add, apply = bars.roll, bars.add, book.apply
    decode = _DECODE
    symbol = ""
    last_u = -1
    last_ts = -1
    seen_snapshot = False
    synced = False
    lineno = 0
    n = 0
    msg: _Msg | None
    with open_lines(path) as fh:
        try:
            for lineno, raw in enumerate(fh, 1):
                try:
                    msg = decode(raw)
                except msgspec.DecodeError as exc:
                    msg = _slow(path, lineno, raw, exc, report)
                    if msg is None:
                        continue
                n += 1
                d = msg.data
                u = d.u
                ts = msg.ts
                if ts - last_ts >= GAP_MS or ts < last_ts or d.s != symbol:
                    if not _check_time_symbol(path, lineno, ts, last_ts, d.s, symbol, report):
                        continue
                    symbol = symbol or d.s
                    last_ts = max(last_ts, ts)
                else:
                    last_ts = ts
                if ts >= bars.next_ms:
                    roll(ts)
                    if on_progress is not None:
                        on_progress(lineno)
                if msg.type == "delta":
                    if u != last_u + 1:
                        if not seen_snapshot:
                            if not skip_until_snapshot:
                                raise DataError(
                                    f"{path} line {lineno}: delta before any snapshot (u={u}); the file is truncated "
                                    "at the start — re-download it or pass skip_until_snapshot=True",
                                    path=str(path), line=lineno)
                            report.flag("skipped_before_snapshot", lineno, f"delta u={u} before any snapshot skipped")
                            last_u = u
                            continue
                        if u == last_u:
                            report.flag("duplicates", lineno, f"delta u={u} repeats the previous update id; skipped")
                            continue
                        if synced:
                            report.flag("seq_gaps", lineno, f"update id jumped from u={last_u} to u={u}; book "
                                        "cleared, deltas skipped until the next snapshot")
                            book.clear()
                            synced = bars.synced = False
                    last_u = u
                    if not synced:
                        if seen_snapshot:
                            report.skipped_unsynced += 1
                        else:
                            report.skipped_before_snapshot += 1
                        continue
                    bb, ba = apply(d.b, d.a)
                    if bb >= ba:
                        if not crossed_ok(path, lineno, bb, ba, f"u={u}", on_crossed, report):
                            bars.n += 1
                            continue
                    add(bb, ba)
                else:
                    bb, ba = book.reset(d.b, d.a)
                    last_u = u
                    report.snapshots += 1
                    if seen_snapshot:
                        report.resyncs += 1
                        bars.resyncs += 1
                        logger.info("{} line {}: snapshot mid-stream (u={}); book reset and resynced", path, lineno, u)
                    else:
                        nb, na = book.n_levels()
                        logger.info("{} line {}: first snapshot received: u={}, {} bid / {} ask levels, best "
                                    "bid/ask {}/{}", path, lineno, u, nb, na, bb, ba)
                    seen_snapshot = synced = bars.synced = True
                    if bb >= ba and not crossed_ok(path, lineno, bb, ba, f"snapshot u={u}", on_crossed, report):
                        bars.n += 1
                        continue
                    add(bb, ba)
        except IO_ERRORS as exc:
            raise io_error(path, lineno, exc) from exc
    if report.skipped_unsynced or report.skipped_before_snapshot:
        logger.warning("{}: {} delta(s) skipped while the book was unsynced, {} before the first snapshot",
                       path, report.skipped_unsynced, report.skipped_before_snapshot)
    if not n:
        raise no_messages(path)
    report.lines, report.messages = lineno, n
    if n and not seen_snapshot:
        logger.warning("{}: no snapshot in the file; no book features", path)
    report.symbols = [symbol] if symbol else []
    return symbol, bars.frame(), book


def _check_time_symbol(path: Path, line: int, ts: int, last_ts: int, sym: str, symbol: str,
                       report: QualityReport) -> bool:
    """Handle the rare cases of the time/symbol check; return False to skip the message."""
    if symbol and sym != symbol:
        report.flag("symbol_mismatch", line, f"symbol {sym!r} differs from the file's {symbol!r}; message skipped")
        return False
    if last_ts < 0:
        return True
    if ts < last_ts:
        report.flag("out_of_order", line, f"ts={ts} is earlier than the previous ts={last_ts}")
    elif ts - last_ts >= GAP_MS:
        report.flag("time_gaps", line, f"no message for {(ts - last_ts) / 60_000:.1f} min (ts {last_ts} -> {ts})")
    return True
