"""Binance stream captures (gzip, ``<recv_ns> <json>`` lines), USD-M or spot: depth synced to a snapshot, trades.

Sync rules (Binance docs, "How to manage a local order book correctly"), chosen per event
by its fields: buffer the diff events until the REST snapshot, then

- USD-M futures (events carry ``pu``): drop any event with ``u < lastUpdateId``; the first
  applied event has ``U <= lastUpdateId <= u``; after that each event's ``pu`` must equal
  the previous event's ``u``;
- spot (no ``pu``): drop any event with ``u <= lastUpdateId``; the first applied event has
  ``U <= lastUpdateId + 1 <= u``; after that each event's ``U`` must equal the previous
  event's ``u + 1``.

A break means the book is out of sync and must be rebuilt from a new snapshot. A capture
may hold no later snapshot: the book then stays unsynced and the minutes until one arrives
carry no book features (counted). ``bookTicker`` messages (spot ones carry no ``e`` field)
are checked (values, crossed/locked) and counted, not used for features.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import polars as pl
from loguru import logger

from quantnb.data._bar_rules import judge_bars
from quantnb.data._bars import MINUTE_MS, BookMinutes, TradeBuffer
from quantnb.data._book import OrderBook
from quantnb.data._io import IO_ERRORS, io_error, no_messages, open_lines
from quantnb.data._quality import QualityReport
from quantnb.data._validate import Price, Size, clean_levels, crossed_ok, decode_error, strict_decode

GAP_MS = 2 * MINUTE_MS
BUFFER_MAX = 20_000  # diff events kept while waiting for a snapshot (Binance: "buffer the events")
NO_PU = -(2**62)  # a spot depth event has no ``pu`` field


class _LooseDepth(msgspec.Struct):
    E: int
    s: str
    U: int
    u: int
    b: list[tuple[float, float]]
    a: list[tuple[float, float]]
    pu: int = NO_PU


class _LooseTrade(msgspec.Struct):
    T: int
    s: str
    t: int
    p: float
    q: float
    m: bool


class _LooseTicker(msgspec.Struct):
    u: int
    s: str
    b: float
    B: float
    a: float
    A: float


# The fast decoder's events: the loose layouts with every price and size constrained (a value out
# of range sends the line to the slow path, which checks each value).
class Depth(_LooseDepth, tag="depthUpdate", tag_field="e"):
    b: list[tuple[Price, Size]]
    a: list[tuple[Price, Size]]


class Trade(_LooseTrade, tag="trade", tag_field="e"):
    p: Price
    q: Size


class _Ticker(_LooseTicker, tag="bookTicker", tag_field="e"):
    b: Price
    B: Size
    a: Price
    A: Size


class _Frame(msgspec.Struct):
    stream: str
    data: Depth | Trade | _Ticker


class _Snapshot(msgspec.Struct):
    lastUpdateId: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]
    E: int = -1  # message output time, ms (USD-M REST depth has it; -1 if absent)


DECODE_FRAME = msgspec.json.Decoder(_Frame, strict=False).decode
DECODE_SNAPSHOT = msgspec.json.Decoder(_Snapshot, strict=False).decode
_DECODE_ANY = msgspec.json.Decoder(strict=False).decode


class BinanceBook:
    """The depth side of a capture: sync state machine, book, per-minute features.

    Parameters
    ----------
    path : pathlib.Path
        The capture, for messages.
    report : QualityReport
        Where defects are counted.
    on_crossed : {"raise", "skip"}
        A crossed book raises a DataError, or is counted and its update left out.
    """

    def __init__(self, path: Path, report: QualityReport, on_crossed: str) -> None:
        self.path, self.report, self.on_crossed = path, report, on_crossed
        self.book = OrderBook()
        self.bars = BookMinutes(self.book, report)
        self.snapshot_id: int | None = None
        self.prev_u = -1
        self.buffer: deque[tuple[Depth, int]] = deque()
        self.last_e = -1
        self.n_depth = 0
        self.n_spot = 0  # depth events without ``pu`` (spot rules)

    def on_depth(self, ev: Depth, line: int) -> None:
        """Apply, buffer or drop one diff by Binance's sequencing rules (a later minute is rolled first).

        Parameters
        ----------
        ev : Depth
            The ``depthUpdate`` event.
        line : int
            Its line in the capture, 1-based.

        Raises
        ------
        DataError
            If the diff leaves the book crossed and ``on_crossed="raise"``.
        """
        self.n_depth += 1
        self.n_spot += ev.pu == NO_PU
        if ev.E < self.last_e:
            self.report.flag("out_of_order", line, f"depthUpdate E={ev.E} earlier than the previous E={self.last_e}")
        else:
            if ev.E - self.last_e >= GAP_MS and self.last_e >= 0:
                self.report.flag("time_gaps", line, f"no depth update for {(ev.E - self.last_e) / 60_000:.1f} min "
                                 f"(E {self.last_e} -> {ev.E})")
            self.last_e = ev.E
        if ev.E >= self.bars.next_ms:
            self.bars.roll(ev.E)
        self._sequence(ev, line)

    def _sequence(self, ev: Depth, line: int) -> None:
        spot = ev.pu == NO_PU
        if self.bars.synced:
            if spot and ev.U != self.prev_u + 1:
                self.report.flag("seq_gaps", line, f"depthUpdate U={ev.U} != previous u+1={self.prev_u + 1} "
                                 "(spot rule); book cleared, waiting for a new snapshot")
            elif not spot and ev.pu != self.prev_u:
                self.report.flag("seq_gaps", line, f"depthUpdate pu={ev.pu} != previous u={self.prev_u}; book "
                                 "cleared, waiting for a new snapshot")
            else:
                self._apply(ev, line)
                return
            self.unsync()
            self._buffer(ev, line)
            return
        if self.snapshot_id is None:
            self._buffer(ev, line)
            return
        target = self.snapshot_id + 1 if spot else self.snapshot_id  # spot: U <= lastUpdateId+1 <= u
        if ev.u < target:
            self.report.stale_dropped += 1
        elif ev.U <= target:
            self.bars.synced = True
            logger.info("{} line {}: book synced: first diff U={} <= {}={} <= u={} ({} rule)", self.path, line, ev.U,
                        "lastUpdateId+1" if spot else "lastUpdateId", target, ev.u, "spot" if spot else "USD-M")
            self._apply(ev, line)
        else:
            self.report.flag("seq_gaps", line, f"first diff after the snapshot starts at U={ev.U} > "
                             f"{'lastUpdateId+1' if spot else 'lastUpdateId'}={target}: the snapshot is too old; "
                             "waiting for a new one")
            self.unsync()
            self._buffer(ev, line)

    def _apply(self, ev: Depth, line: int) -> None:
        self.prev_u = ev.u
        bb, ba = self.book.apply(ev.b, ev.a)
        if bb >= ba and not crossed_ok(self.path, line, bb, ba, f"u={ev.u}", self.on_crossed, self.report):
            self.bars.n += 1
            return
        self.bars.add(bb, ba)

    def unsync(self) -> None:
        self.book.clear()
        self.bars.synced = False
        self.snapshot_id = None

    def _buffer(self, ev: Depth, line: int) -> None:
        if len(self.buffer) >= BUFFER_MAX:
            _, old_line = self.buffer.popleft()
            self.report.flag("buffer_dropped", old_line, f"pre-snapshot buffer full ({BUFFER_MAX} diffs); oldest "
                             "diff dropped")
        self.buffer.append((ev, line))

    def on_snapshot(self, snap: _Snapshot, line: int) -> None:
        """Reset the book to a REST depth snapshot and replay the buffered diffs.

        Parameters
        ----------
        snap : _Snapshot
            The snapshot (``lastUpdateId``, bids, asks).
        line : int
            Its line in the capture, 1-based.

        Raises
        ------
        DataError
            If a level is NaN or infinite, or a replayed diff crosses the book and ``on_crossed="raise"``.
        """
        if snap.E >= self.bars.next_ms:  # close the minute before the reset, so its close is the old book
            self.bars.roll(snap.E)
        bids = clean_levels(snap.bids, "bid", self.path, line, self.report)
        asks = clean_levels(snap.asks, "ask", self.path, line, self.report)
        had = self.report.snapshots > 0
        bb, ba = self.book.reset(bids, asks)
        self.report.snapshots += 1
        self.snapshot_id, self.prev_u = snap.lastUpdateId, -1
        self.bars.synced = False
        if had:
            self.report.resyncs += 1
            self.bars.resyncs += 1
        logger.info("{} line {}: {} REST snapshot received: lastUpdateId={}, {} bid / {} ask levels, best bid/ask "
                    "{}/{}; {} buffered diff(s) to replay", self.path, line, "another" if had else "first",
                    snap.lastUpdateId, len(bids), len(asks), bb, ba, len(self.buffer))
        buffered, self.buffer = self.buffer, deque()
        for ev, ev_line in buffered:
            self._sequence(ev, ev_line)

    def finish(self) -> pl.DataFrame:
        if self.buffer:
            self.report.flag("skipped_unsynced", self.buffer[-1][1], f"{len(self.buffer)} diff(s) still buffered at "
                             "the end of the file (no snapshot to sync them to)", count=len(self.buffer))
        if self.n_depth and not self.report.snapshots:
            logger.warning("{}: no REST depth snapshot in the capture; the book was never synced", self.path)
        return self.bars.frame()


def read_binance(path: Path, report: QualityReport, *, on_crossed: str = "raise",
                 on_progress: Callable[[int], None] | None = None
                 ) -> tuple[str, pl.DataFrame, pl.DataFrame, OrderBook]:
    """Replay a Binance USD-M or spot capture; return the symbol, per-minute book rows, trade bars and the final book.

    Sequencing follows Binance's "How to manage a local order book correctly" (``U``/``u``/``pu``
    of diff. depth streams, developers.binance.com); ``on_crossed`` as in :func:`read_bybit`.
    """
    depth = BinanceBook(path, report, on_crossed)
    trades = TradeBuffer()
    t_ts, t_id, t_px, t_q, t_m = trades.ts, trades.ids, trades.px, trades.qty, trades.maker
    decode = DECODE_FRAME
    symbol = ""
    last_t = last_id = -1
    last_trade: Trade | None = None
    last_trade_line: int | None = None
    n = n_bbo = 0
    lineno = 0
    ev: Depth | Trade | _Ticker | None
    with open_lines(path) as fh:
        try:
            for lineno, raw in enumerate(fh, 1):
                payload = raw if raw[:1] == b"{" else raw[raw.find(b" ", 0, 40) + 1:]
                try:
                    ev = decode(payload).data
                except msgspec.DecodeError as exc:
                    ev = _slow(path, lineno, payload, exc, report, depth)
                    if ev is None:
                        continue
                n += 1
                if type(ev) is _Ticker:
                    n_bbo += 1
                    if ev.b >= ev.a:
                        _bbo_crossed(ev, lineno, report)
                elif type(ev) is Trade:
                    if ev.T < last_t or ev.t <= last_id or ev.s != symbol or ev.T - last_t >= GAP_MS:
                        if not _trade_checks(ev, lineno, last_t, last_id, symbol, report, last_trade, last_trade_line):
                            continue
                        symbol = symbol or ev.s
                    last_t = max(ev.T, last_t)
                    last_id = max(ev.t, last_id)
                    last_trade, last_trade_line = ev, lineno
                    t_ts.append(ev.T)
                    t_id.append(ev.t)
                    t_px.append(ev.p)
                    t_q.append(ev.q)
                    t_m.append(ev.m)
                    if len(t_m) >= trades.chunk:
                        trades.flush()
                        t_ts, t_id, t_px, t_q, t_m = trades.ts, trades.ids, trades.px, trades.qty, trades.maker
                else:
                    assert isinstance(ev, Depth)  # the frame decoder's third and last event type
                    if ev.s != symbol:
                        if symbol:
                            report.flag("symbol_mismatch", lineno, f"depthUpdate for {ev.s!r} in a {symbol} capture; "
                                        "skipped")
                            continue
                        symbol = ev.s
                    if ev.E >= depth.bars.next_ms and on_progress is not None:
                        on_progress(lineno)
                    depth.on_depth(ev, lineno)
        except IO_ERRORS as exc:
            raise io_error(path, lineno, exc) from exc
    if not n:
        raise no_messages(path)
    report.lines, report.messages, report.bbo_updates = lineno, n, n_bbo
    report.symbols = [symbol] if symbol else []
    if depth.n_depth:  # the sync rule the events carried: USD-M (``pu``) or spot (no ``pu``)
        report.market = "spot" if depth.n_spot == depth.n_depth else "usdm"
        if 0 < depth.n_spot < depth.n_depth:
            logger.warning("{}: {} of {} depth events lack 'pu' (spot) and the others carry it (USD-M); "
                           "a capture should hold one market", path, depth.n_spot, depth.n_depth)
    return symbol, depth.finish(), judge_bars(trades.bars(), report, sequence=False), depth.book


def _slow(path: Path, line: int, payload: bytes, exc: Exception, report: QualityReport,
          depth: BinanceBook) -> Depth | Trade | _Ticker | None:
    """Handle a line the fast decoder refused: blank, snapshot, unknown event, bad JSON/layout/values."""
    if not payload.strip():
        report.flag("blank_lines", line, "blank line skipped")
        return None
    obj = strict_decode(_DECODE_ANY, path, line, payload)
    if isinstance(obj, dict) and "lastUpdateId" in obj:
        depth.on_snapshot(strict_decode(DECODE_SNAPSHOT, path, line, payload), line)
        return None
    data = obj.get("data", obj) if isinstance(obj, dict) else None
    kind = data.get("e") if isinstance(data, dict) else None
    if kind is None and isinstance(data, dict) and {"u", "s", "b", "B", "a", "A"} <= data.keys():
        kind = "bookTicker"  # a spot bookTicker carries no event type
    if kind not in ("depthUpdate", "trade", "bookTicker"):
        report.flag("unsupported_messages", line, f"event {kind!r} is not depthUpdate/trade/bookTicker; skipped")
        return None
    try:
        return _loose_event(path, line, kind, msgspec.json.encode(data), report)
    except msgspec.DecodeError as exc2:
        raise decode_error(path, line, payload, exc2) from exc2


_LOOSE: dict[str, msgspec.json.Decoder[Any]] = {
    "depthUpdate": msgspec.json.Decoder(_LooseDepth, strict=False),
    "trade": msgspec.json.Decoder(_LooseTrade, strict=False),
    "bookTicker": msgspec.json.Decoder(_LooseTicker, strict=False),
}


def _loose_event(path: Path, line: int, kind: str, data: bytes,
                 report: QualityReport) -> Depth | Trade | _Ticker | None:
    """Decode an event without value constraints, then check its values one by one."""
    ev = _LOOSE[kind].decode(data)
    if isinstance(ev, _LooseDepth):
        bids = clean_levels(ev.b, "bid", path, line, report)
        asks = clean_levels(ev.a, "ask", path, line, report)
        return Depth(E=ev.E, s=ev.s, U=ev.U, u=ev.u, b=bids, a=asks, pu=ev.pu)
    if isinstance(ev, _LooseTrade):
        levels = [(ev.p, ev.q)]
        ident = f"trade t={ev.t}"
    else:
        levels = [(ev.b, ev.B), (ev.a, ev.A)]
        ident = f"bookTicker u={ev.u}"
    if len(clean_levels(levels, ident, path, line, report)) < len(levels):
        return None  # counted and logged by clean_levels
    if isinstance(ev, _LooseTrade):
        return Trade(ev.T, ev.s, ev.t, ev.p, ev.q, ev.m)
    return _Ticker(ev.u, ev.s, ev.b, ev.B, ev.a, ev.A)


def _bbo_crossed(ev: _Ticker, line: int, report: QualityReport) -> None:
    kind = "locked" if ev.b == ev.a else "crossed"
    report.flag(kind, line, f"bookTicker u={ev.u} (exchange best bid/offer) is {kind}: bid {ev.b!r} ask {ev.a!r}; "
                "counted (bookTicker does not feed the book features)")


def _trade_checks(ev: Trade, line: int, last_t: int, last_id: int, symbol: str, report: QualityReport,
                  last: Trade | None = None, last_line: int | None = None) -> bool:
    """Handle the rare cases of the trade checks; return False to skip the trade."""
    if symbol and ev.s != symbol:
        report.flag("symbol_mismatch", line, f"trade for {ev.s!r} in a {symbol} capture; skipped")
        return False
    if ev.t == last_id:
        report.flag("duplicates", line, f"trade id t={ev.t} repeated; the first one is kept")
        if last is not None and (last.T, last.p, last.q, last.m) != (ev.T, ev.p, ev.q, ev.m):
            report.conflict(line, f"trade id t={ev.t}", last_line, {"T": last.T, "p": last.p, "q": last.q, "m": last.m},
                            {"T": ev.T, "p": ev.p, "q": ev.q, "m": ev.m})
        return False
    if ev.t < last_id or ev.T < last_t:
        report.flag("out_of_order", line, f"trade t={ev.t} T={ev.T} after t={last_id} T={last_t}")
    elif last_t >= 0 and ev.T - last_t >= GAP_MS:
        report.flag("time_gaps", line, f"no trade for {(ev.T - last_t) / 60_000:.1f} min (T {last_t} -> {ev.T})")
    return True
