"""Websocket clients for Bybit v5 public streams and Binance USD-M market streams (on ``picows``).

Each client keeps one connection, reconnects with exponential backoff and full jitter,
resubscribes, keeps the live books (:mod:`quantnb.record._book`) and hands every frame,
as received, to a callback ``on_frame(kind, symbol, recv_ns, exch_ms, text)``.

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
import random
import ssl
import time
from collections.abc import Callable
from typing import Any

import msgspec
from loguru import logger
from picows import WSError, WSInvalidURL, WSListener, WSMsgType, ws_connect

from quantnb.record._book import BinanceLiveBook, BybitLiveBook, decode_bybit_book
from quantnb.record._events import (
    BINANCE_BBO,
    BINANCE_DEPTH,
    BINANCE_SNAPSHOT,
    BINANCE_TRADE,
    BYBIT_BOOK,
    BYBIT_TRADE,
)

__all__ = ["BybitClient", "BinanceClient", "Counters", "BYBIT_URLS", "BINANCE_WS_URL", "BINANCE_REST_URL",
           "backoff_s"]

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
_OPEN_TIMEOUT_S = 10.0
_MAX_FRAME_BYTES = 64 << 20  # a REST-sized snapshot over the websocket is ~1 MB; refuse anything absurd
_CONN_ERRORS = (OSError, WSError, asyncio.TimeoutError, EOFError)


class _Listener(WSListener):
    """picows callbacks of one connection: whole messages to ``on_message(bytes)``, errors kept for the session.

    Fragmented messages (a first frame with FIN unset, then CONTINUATION frames) are joined;
    a CLOSE frame is answered and the connection closed; PINGs are answered by picows.
    An exception raised by ``on_message`` closes the connection and is re-raised by
    :func:`_connection` (not swallowed into a reconnect).
    """

    def __init__(self, on_message: Callable[[bytes], None]) -> None:
        super().__init__()
        self.on_message = on_message
        self.error: BaseException | None = None
        self.close_code: Any = None
        self._parts: list[bytes] | None = None

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        kind = frame.msg_type
        try:
            if kind == WSMsgType.TEXT or kind == WSMsgType.BINARY:
                if frame.fin:
                    self.on_message(frame.get_payload_as_bytes())
                else:
                    self._parts = [frame.get_payload_as_bytes()]
            elif kind == WSMsgType.CONTINUATION:
                if self._parts is None:
                    raise ConnectionResetError("websocket protocol error: a continuation frame with no message "
                                               "started")
                self._parts.append(frame.get_payload_as_bytes())
                if frame.fin:
                    parts, self._parts = self._parts, None
                    self.on_message(b"".join(parts))
            elif kind == WSMsgType.CLOSE:
                self.close_code = frame.get_close_code()
                transport.send_close(self.close_code, frame.get_close_message())
                transport.disconnect()
        except BaseException as exc:  # noqa: BLE001 - re-raised by the session once the connection is down
            if self.error is None:
                self.error = exc
            transport.disconnect()


async def _connection(url: str, on_message: Callable[[bytes], None]) -> tuple[Any, _Listener]:
    """Open a websocket to ``url`` (TCP, TLS for wss, handshake) within ``_OPEN_TIMEOUT_S``.

    Raises
    ------
    ValueError
        If ``url`` is not a ws:// or wss:// URL.
    OSError, picows.WSError, asyncio.TimeoutError
        If the connection or the handshake fails (the client reconnects).
    """
    try:
        return await asyncio.wait_for(
            ws_connect(lambda: _Listener(on_message), url, websocket_handshake_timeout=_OPEN_TIMEOUT_S,
                       max_frame_size=_MAX_FRAME_BYTES, enable_auto_pong=True, logger_name="record"),
            _OPEN_TIMEOUT_S)
    except WSInvalidURL as exc:
        raise ValueError(f"websocket URL {url!r} is not a ws:// or wss:// URL: {exc}") from exc


async def _until_closed(transport: Any, listener: _Listener) -> None:
    """Wait until the connection is down; re-raise the listener's error, else raise ConnectionResetError."""
    try:
        await transport.wait_disconnected()
    finally:
        if not transport.is_disconnected:  # cancelled (the recorder stops): close politely, then drop
            with contextlib.suppress(Exception):
                transport.send_close()
            transport.disconnect()
    if listener.error is not None:
        raise listener.error
    raise ConnectionResetError(f"the server closed the connection (close code {listener.close_code})"
                               if listener.close_code is not None else "the connection was dropped")


def _send(transport: Any, obj: Any) -> None:
    transport.send(WSMsgType.TEXT, json.dumps(obj).encode())

OnFrame = Callable[..., None]  # (kind, symbol, recv_ns, exch_ms, text, decoded=None)


class Counters:
    """Per-symbol counters of a recording session (JSON-ready via :meth:`to_dict`).

    Parameters
    ----------
    symbols : list of str
        The recorded symbols; each starts with every field of ``FIELDS`` at 0.
    """

    FIELDS = ("messages", "snapshots", "deltas", "trades", "bbo", "gaps", "resyncs", "reconnects", "bytes_in")

    def __init__(self, symbols: list[str]) -> None:
        self.by_symbol: dict[str, dict[str, int]] = {s: dict.fromkeys(self.FIELDS, 0) for s in symbols}

    def add(self, symbol: str, field: str, n: int = 1) -> None:
        """Add ``n`` to one symbol's counter.

        Parameters
        ----------
        symbol : str
            One of the symbols given to the constructor.
        field : str
            One of ``FIELDS``.
        n : int, default 1
            Amount to add (messages, or bytes for ``bytes_in``).

        Raises
        ------
        KeyError
            If ``symbol`` or ``field`` is unknown.
        """
        self.by_symbol[symbol][field] += n

    def total(self, field: str) -> int:
        """Return one counter summed over all symbols.

        Parameters
        ----------
        field : str
            One of ``FIELDS``.

        Returns
        -------
        int
            The sum.

        Raises
        ------
        KeyError
            If ``field`` is unknown.
        """
        return sum(c[field] for c in self.by_symbol.values())

    def to_dict(self) -> dict[str, dict[str, int]]:
        return {s: dict(c) for s, c in self.by_symbol.items()}


def backoff_s(attempt: int, base_s: float = 0.5, cap_s: float = 30.0) -> float:
    """Delay before reconnect ``attempt`` (1, 2, ...): exponential backoff with full jitter, seconds.

    Parameters
    ----------
    attempt : int
        Reconnect attempt, from 1.
    base_s : float, default 0.5
        Upper bound of the first delay, seconds; doubles per attempt.
    cap_s : float, default 30.0
        Largest upper bound, seconds.

    Returns
    -------
    float
        A delay drawn uniformly from ``[0, min(cap_s, base_s * 2 ** (attempt - 1))]``, seconds.

    References
    ----------
    M. Brooker, "Exponential Backoff And Jitter", AWS Architecture Blog, 2015 ("full jitter").
    """
    return random.uniform(0.0, min(cap_s, base_s * 2 ** (attempt - 1)))


class _Client:
    venue = ""

    def __init__(self, symbols: list[str], on_frame: OnFrame, counters: Counters, *, backoff_base_s: float = 0.5,
                 backoff_cap_s: float = 30.0) -> None:
        self.symbols = [s.upper() for s in symbols]
        self.on_frame = on_frame
        self.counters = counters
        self.backoff_base_s, self.backoff_cap_s = backoff_base_s, backoff_cap_s
        self.connections = 0
        self.confirmed = asyncio.Event()
        self._transport: Any = None
        self._paused = False

    async def run(self) -> None:
        """Connect, subscribe and stream until cancelled; reconnect with backoff on any failure."""
        attempt = 0
        while True:
            try:
                await self._session()
                attempt = 0
            except asyncio.CancelledError:
                raise
            except _CONN_ERRORS as exc:
                attempt += 1
                delay = backoff_s(attempt, self.backoff_base_s, self.backoff_cap_s)
                hint = ("; the server's TLS certificate is not trusted here: behind a TLS-inspecting proxy, point "
                        "SSL_CERT_FILE at its CA bundle" if isinstance(exc, ssl.SSLCertVerificationError) else "")
                logger.warning("{} connection lost or refused ({}: {}){}; reconnect attempt {} in {:.2f} s",
                               self.venue, type(exc).__name__, exc, hint, attempt, delay)
                await asyncio.sleep(delay)
            for s in self.symbols:
                self.counters.add(s, "reconnects")

    async def _session(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def pause_reading(self) -> bool:
        """Stop reading the socket (backpressure: TCP flow control then holds the sender).

        Returns
        -------
        bool
            True if reading was running and is now paused.
        """
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


class BybitClient(_Client):
    """Bybit v5 public streams (linear or spot): ``orderbook.<depth>.<SYMBOL>``, ``publicTrade.<SYMBOL>``.

    Parameters
    ----------
    symbols : list of str
    on_frame : callable
        ``on_frame(kind, symbol, recv_ns, exch_ms, text)`` for every data frame.
    counters : Counters
    url : str
        ``wss://stream.bybit.com/v5/public/linear`` (or spot, or a testnet / loopback URL).
    depth : {1, 50, 200, 500}
        Order-book depth (Bybit: 1, 50, 200 linear, 500 linear; spot 1, 50, 200).
    channels : list of {"book", "trades"}
    ping_every_s : float
        Client heartbeat period (Bybit: 20 s).

    Attributes
    ----------
    books : dict of str to BybitLiveBook
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
        out = []
        for s in self.symbols:
            if "book" in self.channels:
                out.append(f"orderbook.{self.depth}.{s}")
            if "trades" in self.channels:
                out.append(f"publicTrade.{s}")
        return out

    async def _session(self) -> None:
        logger.info("bybit: connecting to {}", self.url)
        transport, listener = await _connection(self.url, self._on_message)
        self._transport, self._paused = transport, False
        self.connections += 1
        self._last_rx_ns = time.time_ns()
        topics = self.topics()
        for s in self.symbols:  # a new connection starts from a new snapshot
            b = self.books[s]
            if b.synced:
                b.book.clear()
                b.synced = b.minutes.synced = False
        logger.info("bybit: connected (connection {}); subscribing to {}", self.connections, ", ".join(topics))
        _send(transport, {"op": "subscribe", "req_id": f"sub{self.connections}", "args": topics})
        tasks = [asyncio.create_task(self._ping(transport)), asyncio.create_task(self._resubscriber(transport))]
        try:
            await _until_closed(transport, listener)
        finally:
            for t in tasks:
                t.cancel()

    async def _ping(self, transport: Any) -> None:
        """Send Bybit's heartbeat every ``ping_every_s``; a connection silent for 3 periods is closed (reconnect)."""
        n = 0
        while True:
            await asyncio.sleep(self.ping_every_s)
            silent_s = (time.time_ns() - self._last_rx_ns) / 1e9
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
        recv_ns = self._last_rx_ns = time.time_ns()
        if text.startswith(b'{"topic":"orderbook.'):
            msg = decode_bybit_book(text)
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
            before = book.resyncs
            if book.on_message(msg) == "gap":
                c["gaps"] += 1
                self._resync.put_nowait(msg.topic)
            if book.resyncs != before:
                c["resyncs"] += 1
            self.on_frame(BYBIT_BOOK, sym, recv_ns, msg.ts, text, msg)
        elif text.startswith(b'{"topic":"publicTrade.'):
            sym = text[22:text.index(b'"', 22)].decode()
            c = self.counters.by_symbol.get(sym)
            if c is None:
                logger.warning("bybit: trade for unsubscribed symbol {!r} ignored", sym)
                return
            c["messages"] += 1
            c["bytes_in"] += len(text)
            c["trades"] += text.count(b'"T":')
            self.on_frame(BYBIT_TRADE, sym, recv_ns, _ts(text), text)
        else:
            self._control(text)

    def _control(self, text: bytes) -> None:
        try:
            msg = msgspec.json.decode(text)
        except msgspec.DecodeError:
            logger.warning("bybit: undecodable frame {!r}", text[:200])
            return
        op = msg.get("op") if isinstance(msg, dict) else None
        if op == "ping" or msg.get("ret_msg") == "pong":
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


def _ts(text: bytes) -> int:
    i = text.find(b'"ts":')
    if i < 0:
        return 0
    j = i + 5
    k = j
    while k < len(text) and 48 <= text[k] <= 57:
        k += 1
    return int(text[j:k]) if k > j else 0


class BinanceClient(_Client):
    """Binance USD-M market streams: ``<symbol>@depth@100ms`` (or ``@0ms``) synced to REST, ``@trade``, ``@bookTicker``.

    Parameters
    ----------
    symbols : list of str
    on_frame : callable
        ``on_frame(kind, symbol, recv_ns, exch_ms, text)`` for every frame and every REST snapshot.
    counters : Counters
    ws_url, rest_url : str
        Websocket root (``/stream?streams=...`` appended) and REST root (``/fapi/v1/depth``).
    channels : list of {"book", "trades", "bbo"}
    depth_speed : {"100ms", "0ms", "250ms", "500ms"}
    snapshot_limit : int
        Levels of the REST snapshot (Binance: 5 ... 1000).

    Attributes
    ----------
    books : dict of str to BinanceLiveBook
    """

    venue = "binance"

    def __init__(self, symbols: list[str], on_frame: OnFrame, counters: Counters, *, ws_url: str, rest_url: str,
                 channels: tuple[str, ...] = ("book", "trades", "bbo"), depth_speed: str = "100ms",
                 snapshot_limit: int = 1000, market: str = "usdm", **kw: Any) -> None:
        super().__init__(symbols, on_frame, counters, **kw)
        self.ws_url, self.rest_url = ws_url.rstrip("/"), rest_url.rstrip("/")
        self.channels, self.depth_speed, self.snapshot_limit = tuple(channels), depth_speed, snapshot_limit
        self.books = {s: BinanceLiveBook(s, market) for s in self.symbols}
        self._fetching: set[str] = set()
        self._http: Any = None
        self._tasks: list[asyncio.Task] = []
        self.want_book = "book" in self.channels

    def streams(self) -> list[str]:
        out = []
        for s in self.symbols:
            low = s.lower()
            if "book" in self.channels:
                out.append(f"{low}@depth@{self.depth_speed}")
            if "trades" in self.channels:
                out.append(f"{low}@trade")
            if "bbo" in self.channels:
                out.append(f"{low}@bookTicker")
        return out

    async def _session(self) -> None:
        import aiohttp

        url = f"{self.ws_url}/stream?streams={'/'.join(self.streams())}"
        logger.info("binance: connecting to {}", url)
        async with aiohttp.ClientSession() as http:
            transport, listener = await _connection(url, self._on_message)
            self._transport, self._paused = transport, False
            self._http = http
            self.connections += 1
            logger.info("binance: connected (connection {}); streams {} subscribed by URL", self.connections,
                        ", ".join(self.streams()))
            self.confirmed.set()
            # After a reconnect the book carries on only if the first diff chains (pu == previous u, Binance's
            # rule); a diff missed while away breaks the chain, which clears the book and fetches a new REST
            # snapshot. The raw file then replays identically through the ETL (same frames, same order).
            self._tasks = []
            try:
                await _until_closed(transport, listener)
            finally:
                for t in self._tasks:
                    t.cancel()
                self._fetching.clear()

    def _on_message(self, text: bytes) -> None:
        """Handle one frame (called by picows on the event loop, as it is parsed)."""
        recv_ns = time.time_ns()
        at = text.find(b"@")
        sym = text[11:at].decode().upper() if text.startswith(b'{"stream":"') and at > 0 else ""
        book = self.books.get(sym)
        if book is None:
            logger.debug("binance: ignored frame {!r}", text[:200])
            return
        c = self.counters.by_symbol[sym]
        c["messages"] += 1
        c["bytes_in"] += len(text)
        what = book.on_frame(text)
        if what == "bbo":
            c["bbo"] += 1
            self.on_frame(BINANCE_BBO, sym, recv_ns, 0, text)
            return
        if what == "trade":
            c["trades"] += 1
            self.on_frame(BINANCE_TRADE, sym, recv_ns, 0, text)
            return
        c["deltas"] += 1
        if what == "gap":
            c["gaps"] += 1
        self.on_frame(BINANCE_DEPTH, sym, recv_ns, 0, text, book.last_event)
        if self.want_book and book.needs_snapshot and sym not in self._fetching:
            self._fetching.add(sym)
            self._tasks.append(asyncio.create_task(self._snapshot(sym)))

    async def _snapshot(self, sym: str, delay_s: float = 0.0) -> None:
        """Fetch REST snapshots until the book syncs (a too-old snapshot is fetched again)."""
        book, c = self.books[sym], self.counters.by_symbol[sym]
        url = f"{self.rest_url}/fapi/v1/depth"
        attempt = 0
        try:
            while book.needs_snapshot:
                if attempt:
                    await asyncio.sleep(min(5.0, 0.05 * 2 ** attempt))
                attempt += 1
                async with self._http.get(url, params={"symbol": sym, "limit": str(self.snapshot_limit)}) as resp:
                    text = (await resp.read()).strip().replace(b"\n", b"")  # one line in the raw file
                    if resp.status != 200:
                        logger.warning("binance: GET /fapi/v1/depth {} -> HTTP {}: {!r}; retrying", sym, resp.status,
                                       text[:200])
                        continue
                recv_ns = time.time_ns()
                before = book.resyncs
                book.on_snapshot(text)
                c["snapshots"] += 1
                if book.resyncs != before:
                    c["resyncs"] += 1
                self.on_frame(BINANCE_SNAPSHOT, sym, recv_ns, 0, text)
                lid = book.depth.snapshot_id
                if book.synced:
                    bb, ba = book.book.best_bid, book.book.best_ask
                    logger.info("binance: {} book synced to REST snapshot lastUpdateId={} (best bid/ask {}/{})",
                                sym, lid, bb, ba)
        finally:
            self._fetching.discard(sym)
