"""Websocket clients for Bybit v5 public streams and Binance USD-M market streams (on ``picows``).

Each client keeps one connection, reconnects with exponential backoff and full jitter
(its :attr:`reconnect` :class:`quantnb.retry.RetryPolicy`),
resubscribes, keeps the live books (:mod:`quantnb.record._book`) and hands every frame,
as received, to a callback ``on_frame(kind, symbol, recv_ns, exch_ms, text)``. The Binance
client is in :mod:`quantnb.record._binance_client`, the websocket plumbing in
:mod:`quantnb.record._ws`.

A frame that cannot be decoded is handed to ``on_bad_frame`` (quarantine), counted
(``bad_frames``), logged once per connection, and its book resyncs; the connection stays
up. NaN/inf prices and crossed books are counted (``nan_prices``, ``crossed``) and warned
once per connection. A watchdog reads the counters every quarter of the shorter timeout
and closes a connection with no data frame for ``stale_after_s`` (Bybit pongs do not
count) or a book channel silent for ``book_stale_after_s`` (``stalls``); the reconnect
resyncs (Bybit: new snapshots; Binance: the ``pu`` chain, else a REST snapshot).

Keep-alive: Bybit wants ``{"op":"ping"}`` from the client about every 20 s (v5 docs,
"Connect > How to Send the Heartbeat Packet"); Binance pings the client every 3 minutes
and closes connections that do not answer pong within 10 minutes (picows answers pings
automatically).

Why picows and not ``websockets`` or aiohttp: receiving one ~500-byte Bybit book frame on
loopback and doing nothing with it costs 10.2 us of user CPU with ``websockets`` 17.4
(``await ws.recv()``: a future and a queue per message, frame parsing in Python) and about
the same with aiohttp 3.14, against 3.2-3.6 us with picows 2.3 (MIT), whose frame parser
is Cython and which hands frames to a callback. The recorder's goal is 50,000 frames/s per
core, i.e. 20 us per frame for everything; ``websockets`` alone took half of that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import Callable
from typing import Any

import msgspec
from loguru import logger

from quantnb.errors import TemporaryError
from quantnb.record._book import BybitLiveBook, decode_bybit_book
from quantnb.record._events import (
    BYBIT_BOOK,
    BYBIT_TRADE,
)
from quantnb.record._guard import has_nonfinite
from quantnb.record._ws import _CONN_ERRORS, _connection, _send, _until_closed
from quantnb.retry import RetryPolicy

__all__ = ["BybitClient", "Counters", "BYBIT_URLS", "BINANCE_WS_URL", "BINANCE_REST_URL"]

BYBIT_URLS = {
    "linear": "wss://stream.bybit.com/v5/public/linear",
    "spot": "wss://stream.bybit.com/v5/public/spot",
}
BYBIT_TESTNET_URLS = {
    "linear": "wss://stream-testnet.bybit.com/v5/public/linear",
    "spot": "wss://stream-testnet.bybit.com/v5/public/spot",
}
BINANCE_WS_URL = "wss://fstream.binance.com"
BINANCE_REST_URL = "https://fapi.binance.com"
BINANCE_TESTNET_WS_URL = "wss://stream.binancefuture.com"
BINANCE_TESTNET_REST_URL = "https://testnet.binancefuture.com"
BYBIT_PING_S = 20.0
_MS_PER_DAY = 86_400_000


OnFrame = Callable[..., None]  # (kind, symbol, recv_ns, exch_ms, text, decoded=None)


class Counters:
    """Per-symbol counters of a recording session (JSON-ready via :meth:`to_dict`)."""

    FIELDS = ("messages", "snapshots", "deltas", "trades", "bbo", "gaps", "resyncs", "reconnects", "bytes_in",
              "bad_frames", "nan_prices", "crossed", "stalls")

    def __init__(self, symbols: list[str]) -> None:
        self.by_symbol: dict[str, dict[str, int]] = {s: dict.fromkeys(self.FIELDS, 0) for s in symbols}

    def add(self, symbol: str, field: str, n: int = 1) -> None:
        """Add ``n`` to one symbol's counter."""
        self.by_symbol[symbol][field] += n

    def total(self, field: str) -> int:
        """Return one counter summed over all symbols."""
        return sum(c[field] for c in self.by_symbol.values())

    def to_dict(self) -> dict[str, dict[str, int]]:
        return {s: dict(c) for s, c in self.by_symbol.items()}


class _Client:
    """What both venue clients share: reconnect loop, bad-frame quarantine, book checks, liveness watchdog."""

    venue = ""
    channels: tuple[str, ...] = ()
    clock_ns = staticmethod(time.time_ns)  # receive time (UTC ns): the raw files' days follow it

    def __init__(self, symbols: list[str], on_frame: OnFrame, counters: Counters, *, backoff_base_s: float = 0.5,
                 backoff_cap_s: float = 30.0, stale_after_s: float | None = 30.0,
                 book_stale_after_s: float | None = 60.0, on_bad_frame: Callable[..., None] | None = None,
                 on_raw_only: OnFrame | None = None) -> None:
        self.symbols = [s.upper() for s in symbols]
        self.on_frame = on_frame
        self.on_bad_frame = on_bad_frame
        self.on_raw_only = on_raw_only
        self.counters = counters
        self.backoff_base_s, self.backoff_cap_s = backoff_base_s, backoff_cap_s
        self.reconnect = RetryPolicy(attempts=None, timeout_s=None, wait_initial_s=backoff_base_s,
                                     wait_max_s=backoff_cap_s, jitter="full", what=f"record/{self.venue}")
        self.stale_after_s, self.book_stale_after_s = stale_after_s, book_stale_after_s
        self.connections = 0
        self.bad_frames = 0
        self.stalls = 0
        self.confirmed = asyncio.Event()
        self._transport: Any = None
        self._paused = False
        self._bad_on_conn = 0
        self._warned: set[tuple[str, str, int]] = set()
        self._day_end: dict[str, int] = dict.fromkeys(self.symbols, -1)  # end of the current UTC day per symbol

    async def run(self) -> None:
        """Stream until cancelled; reconnect at once after a clean close, else after the :attr:`reconnect` wait."""
        while True:
            await self.reconnect.acall(self._connect_once)

    async def _connect_once(self) -> None:
        """One connection, start to end; a lost or refused one is a TemporaryError (retried under the policy)."""
        try:
            await self._session()
        except _CONN_ERRORS as exc:
            hint = ("; the server's TLS certificate is not trusted here: behind a TLS-inspecting proxy, point "
                    "SSL_CERT_FILE at its CA bundle" if isinstance(exc, ssl.SSLCertVerificationError) else "")
            self._count_reconnect()
            raise TemporaryError(f"{self.venue} connection lost or refused ({type(exc).__name__}: {exc}){hint}") \
                from exc
        self._count_reconnect()

    def _count_reconnect(self) -> None:
        for s in self.symbols:
            self.counters.add(s, "reconnects")

    async def _session(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _connected(self) -> None:
        """Reset the per-connection state (a new connection starts its liveness clocks and its log-once flags)."""
        self.connections += 1
        self._bad_on_conn = 0

    def _bad_frame(self, text: bytes, exc: Exception, recv_ns: int, symbol: str | None) -> None:
        """Count, quarantine and log (once per connection) a frame that cannot be decoded."""
        self.bad_frames += 1
        if symbol in self.counters.by_symbol:
            self.counters.add(symbol, "bad_frames")
        self._bad_on_conn += 1
        reason = f"{type(exc).__name__}: {exc}"
        if self._bad_on_conn == 1:
            logger.warning("{}: bad frame on connection {} ({}); quarantined, {} resyncing, recording goes on "
                           "(further bad frames on this connection are counted, not logged): {!r}", self.venue,
                           self.connections, reason, f"{symbol} book" if symbol else "the books", text[:120])
        else:
            logger.debug("{}: bad frame {} on connection {} ({})", self.venue, self._bad_on_conn, self.connections,
                         reason)
        if self.on_bad_frame is not None:
            self.on_bad_frame(venue=self.venue, connection=self.connections, recv_ns=recv_ns, reason=reason,
                              text=text, symbol=symbol)

    def _check(self, sym: str, c: dict[str, int], text: bytes, crossed: bool) -> None:
        """Flag a frame with a NaN/inf price or size, and a book left crossed (counted; warned once per connection)."""
        if (text.find(b"n") >= 0 or text.find(b"N") >= 0) and has_nonfinite(text):
            c["nan_prices"] += 1
            self._warn_once("nan", sym, "{}: {} frame with a NaN/inf price or size (counted as nan_prices; the ETL "
                            "drops such levels): {!r}", self.venue, sym, text[:160])
        if crossed:
            c["crossed"] += 1
            self._warn_once("crossed", sym, "{}: {} book crossed after a frame (best bid >= best ask; counted as "
                            "crossed, left out of the minute's features as the ETL does)", self.venue, sym)

    def _warn_once(self, what: str, sym: str, fmt: str, *args: Any) -> None:
        key = (what, sym, self.connections)
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(fmt + " (once per connection)", *args)

    async def _watchdog(self, transport: Any) -> None:
        """Close a connection with no data for ``stale_after_s`` or a book silent for ``book_stale_after_s``."""
        limits = [x for x in (self.stale_after_s, self.book_stale_after_s) if x]
        if not limits:
            return
        period = min(limits) / 4
        by = self.counters.by_symbol
        t0 = time.monotonic()
        total_seen, total_at = sum(c["messages"] for c in by.values()), t0
        book_seen = {s: (by[s]["snapshots"] + by[s]["deltas"], t0) for s in self.symbols}
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            total = sum(c["messages"] for c in by.values())
            if total != total_seen:
                total_seen, total_at = total, now
            for s in self.symbols:
                n = by[s]["snapshots"] + by[s]["deltas"]
                if n != book_seen[s][0]:
                    book_seen[s] = (n, now)
            why, syms = "", self.symbols
            if self.stale_after_s and now - total_at > self.stale_after_s:
                why = f"no data frame for {now - total_at:.1f} s (stale_after_s={self.stale_after_s:g})"
            elif self.book_stale_after_s and self._watch_book():
                late = [s for s in self.symbols if now - book_seen[s][1] > self.book_stale_after_s]
                if late:
                    syms = late
                    why = (f"no book frame for {', '.join(late)} for {now - min(book_seen[s][1] for s in late):.1f}"
                           f" s (book_stale_after_s={self.book_stale_after_s:g})")
            if why:
                self.stalls += 1
                for s in syms:
                    self.counters.add(s, "stalls")
                logger.warning("{}: {} on connection {}{}; reconnecting and resyncing", self.venue, why,
                               self.connections, self._alive_hint())
                transport.disconnect()  # Bybit: the new connection starts from new snapshots; Binance: a diff
                # missed while silent breaks the pu chain, which fetches a new REST snapshot
                return

    def _watch_book(self) -> bool:
        return False

    def _alive_hint(self) -> str:
        return ""

    def _stream_names(self, names: dict[str, str]) -> list[str]:
        """Return each symbol's names of the subscribed channels (templates of ``{s}`` and ``{low}``), in order."""
        return [t.format(s=s, low=s.lower()) for s in self.symbols for ch, t in names.items() if ch in self.channels]

    def _invalidate(self, sym: str | None) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def pause_reading(self) -> bool:
        """Stop reading the socket (backpressure: TCP flow control then holds the sender)."""
        tr = self._transport
        if self._paused or tr is None or tr.is_disconnected:
            return False
        tr.underlying_transport.pause_reading()
        self._paused = True
        return True

    def resume_reading(self) -> None:
        """Read the socket again after :meth:`pause_reading` (no-op otherwise)."""
        tr, self._paused = self._transport, False
        if tr is not None and not tr.is_disconnected:
            with contextlib.suppress(RuntimeError):  # not paused (a new connection)
                tr.underlying_transport.resume_reading()


class _BybitTrade(msgspec.Struct):
    T: int
    s: str
    S: str
    v: str
    p: str
    i: str
    seq: int = 0


class _BybitTrades(msgspec.Struct):
    topic: str
    ts: int
    data: list[_BybitTrade]


_decode_bybit_trades = msgspec.json.Decoder(_BybitTrades).decode  # the types the Parquet sink reads them with


def _topic_symbol(text: bytes) -> str | None:
    """Return the symbol of a Bybit frame's topic (``orderbook.200.BTCUSDT`` -> ``BTCUSDT``) from the bytes."""
    i = text.find(b'"topic":"')
    j = text.find(b'"', i + 9) if i >= 0 else -1
    if j < 0:
        return None
    return text[i + 9:j].rsplit(b".", 1)[-1].decode("utf-8", "replace")


class BybitClient(_Client):
    """Bybit v5 public streams (linear or spot): ``orderbook.<depth>.<SYMBOL>``, ``publicTrade.<SYMBOL>``.

    Depths: 1, 50, 200, 500 (linear); 1, 50, 200 (spot); heartbeat every 20 s (Bybit's). A
    connection with no data frame for ``stale_after_s`` (pongs do not count), or a symbol with no
    book frame for ``book_stale_after_s``, is closed with a WARNING, then reconnected and
    resubscribed (new snapshots).
    """

    venue = "bybit"

    def __init__(self, symbols: list[str], on_frame: OnFrame, counters: Counters, *, url: str, depth: int = 200,
                 channels: tuple[str, ...] = ("book", "trades"), ping_every_s: float = BYBIT_PING_S,
                 market: str = "linear", **kw: Any) -> None:
        super().__init__(symbols, on_frame, counters, **kw)
        self.url, self.depth, self.channels, self.ping_every_s = url, depth, tuple(channels), ping_every_s
        self.books = {s: BybitLiveBook(s, market) for s in self.symbols}
        self.pongs = 0
        self._last_rx_ns = time.time_ns()
        self._resync: asyncio.Queue[str] = asyncio.Queue()

    def topics(self) -> list[str]:
        return self._stream_names({"book": f"orderbook.{self.depth}.{{s}}", "trades": "publicTrade.{s}"})

    async def _session(self) -> None:
        logger.info("bybit: connecting to {}", self.url)
        transport, listener = await _connection(self.url, self._on_message)
        self._transport, self._paused = transport, False
        self._connected()
        self._last_rx_ns = self.clock_ns()
        topics = self.topics()
        for s in self.symbols:  # a new connection starts from a new snapshot
            b = self.books[s]
            if b.synced:
                b.book.clear()
                b.synced = b.minutes.synced = False
        logger.info("bybit: connected (connection {}); subscribing to {}", self.connections, ", ".join(topics))
        _send(transport, {"op": "subscribe", "req_id": f"sub{self.connections}", "args": topics})
        tasks = [asyncio.create_task(self._ping(transport)), asyncio.create_task(self._resubscriber(transport)),
                 asyncio.create_task(self._watchdog(transport))]
        try:
            await _until_closed(transport, listener)
        finally:
            for t in tasks:
                t.cancel()

    def _watch_book(self) -> bool:
        return "book" in self.channels

    def _alive_hint(self) -> str:
        silent = (self.clock_ns() - self._last_rx_ns) / 1e9
        return f" (the server still answers: last pong or frame {silent:.1f} s ago)" if silent < 2 * self.ping_every_s \
            else ""

    def _invalidate(self, sym: str | None) -> None:
        """Drop the book of ``sym`` (all when None) and resubscribe its topic for a new snapshot."""
        for s in [sym] if sym else self.symbols:
            b = self.books[s]
            b.book.clear()
            b.synced = b.minutes.synced = b.crossed = False
            if "book" in self.channels:
                self._resync.put_nowait(f"orderbook.{self.depth}.{s}")

    async def _ping(self, transport: Any) -> None:
        """Send Bybit's heartbeat every ``ping_every_s``; a connection silent for 3 periods is closed (reconnect)."""
        n = 0
        while True:
            await asyncio.sleep(self.ping_every_s)
            silent_s = (self.clock_ns() - self._last_rx_ns) / 1e9
            if silent_s > 3 * self.ping_every_s:
                logger.warning("bybit: nothing received for {:.1f} s (not even a pong); reconnecting", silent_s)
                transport.disconnect()
                return
            n += 1
            _send(transport, {"op": "ping", "req_id": f"ping{n}"})
            logger.debug("bybit: ping {} sent", n)

    async def _resubscriber(self, transport: Any) -> None:
        while True:
            topic = await self._resync.get()
            logger.info("bybit: resubscribing to {} for a new snapshot", topic)
            _send(transport, {"op": "unsubscribe", "req_id": f"unsub-{topic}", "args": [topic]})
            _send(transport, {"op": "subscribe", "req_id": f"resub-{topic}", "args": [topic]})

    def _on_message(self, text: bytes) -> None:
        """Handle one frame (called by picows on the event loop, as it is parsed)."""
        recv_ns = self._last_rx_ns = self.clock_ns()
        if text.startswith(b'{"topic":"orderbook.'):
            try:
                msg = decode_bybit_book(text)
            except msgspec.DecodeError as exc:  # truncated JSON, or wrong types (ValidationError)
                sym = _topic_symbol(text)
                sym = sym if sym in self.books else None
                self._bad_frame(text, exc, recv_ns, sym)
                self._invalidate(sym)
                return
            sym = msg.data.s
            c = self.counters.by_symbol.get(sym)
            if c is None:
                logger.warning("bybit: frame for unsubscribed symbol {!r} ignored: {!r}", sym, text[:120])
                return
            c["messages"] += 1
            c["bytes_in"] += len(text)
            if msg.type == "snapshot":
                c["snapshots"] += 1
            else:
                c["deltas"] += 1
            book = self.books[sym]
            if msg.ts >= self._day_end[sym]:  # the first frame of a UTC day (exchange time)
                if self._day_end[sym] >= 0 and msg.type == "delta":
                    self._day_roll(sym, book, msg, recv_ns)
                self._day_end[sym] = (msg.ts // _MS_PER_DAY + 1) * _MS_PER_DAY
            before = book.resyncs
            if book.on_message(msg) == "gap":
                c["gaps"] += 1
                self._resync.put_nowait(msg.topic)
            if book.resyncs != before:
                c["resyncs"] += 1
            if book.crossed or text.find(b"n") >= 0 or text.find(b"N") >= 0:
                self._check(sym, c, text, book.crossed)
            self.on_frame(BYBIT_BOOK, sym, recv_ns, msg.ts, text, msg)
        elif text.startswith(b'{"topic":"publicTrade.'):
            try:
                tr = _decode_bybit_trades(text)
            except msgspec.DecodeError as exc:
                self._bad_frame(text, exc, recv_ns, _topic_symbol(text))
                return
            sym = tr.topic[12:]
            c = self.counters.by_symbol.get(sym)
            if c is None:
                logger.warning("bybit: trade for unsubscribed symbol {!r} ignored", sym)
                return
            c["messages"] += 1
            c["bytes_in"] += len(text)
            c["trades"] += len(tr.data)
            self._check(sym, c, text, False)
            self.on_frame(BYBIT_TRADE, sym, recv_ns, tr.ts, text)
        else:
            self._control(text)

    def _day_roll(self, sym: str, book: BybitLiveBook, msg: Any, recv_ns: int) -> None:
        """Start the new UTC day's raw file with the live book as a snapshot line (each day's file stands alone)."""
        if not book.synced:
            logger.warning("bybit: {} UTC day roll while the book is unsynced: the new day's raw file starts at the "
                           "next snapshot (resubscribing)", sym)
            self._invalidate(sym)
            return
        ts = msg.ts // _MS_PER_DAY * _MS_PER_DAY
        side = {"b": book.book.levels("bid"), "a": book.book.levels("ask")}
        data = {"s": sym, **{k: [[repr(p), repr(q)] for p, q in v] for k, v in side.items()},
                "u": book.last_u, "seq": msg.data.seq}
        line = json.dumps({"topic": msg.topic, "type": "snapshot", "ts": ts, "data": data, "cts": ts},
                          separators=(",", ":")).encode()
        logger.info("bybit: {} UTC day roll: the new day's raw file starts with the live book as a snapshot (u={}, "
                    "{} bid / {} ask levels)", sym, book.last_u, len(side["b"]), len(side["a"]))
        if self.on_raw_only is not None:
            self.on_raw_only(BYBIT_BOOK, sym, recv_ns, ts, line)

    def _control(self, text: bytes) -> None:
        try:
            msg = msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            self._bad_frame(text, exc, self.clock_ns(), None)
            return
        op = msg.get("op") if isinstance(msg, dict) else None
        if not isinstance(msg, dict):
            logger.debug("bybit: ignored frame {!r}", text[:200])
        elif op == "ping" or msg.get("ret_msg") == "pong":
            self.pongs += 1
            logger.debug("bybit: pong")
        elif op in ("subscribe", "unsubscribe"):
            if msg.get("success"):
                logger.info("bybit: {} confirmed (req_id={}, conn_id={})", op, msg.get("req_id"), msg.get("conn_id"))
                self.confirmed.set()
            else:
                logger.error("bybit: {} refused: {}", op, msg.get("ret_msg"))
        else:
            logger.debug("bybit: ignored frame {!r}", text[:200])
