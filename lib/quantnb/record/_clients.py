"""Websocket clients for Bybit v5 public streams and Binance USD-M market streams (on ``websockets``).

Each client keeps one connection, reconnects with exponential backoff and full jitter,
resubscribes, keeps the live books (:mod:`quantnb.record._book`) and hands every frame,
as received, to a callback ``on_frame(kind, symbol, recv_ns, exch_ms, text)``.

Keep-alive: Bybit wants ``{"op":"ping"}`` from the client about every 20 s (v5 docs,
"Connect > How to Send the Heartbeat Packet"); Binance pings the client every 3 minutes
and closes connections that do not answer pong within 10 minutes (``websockets`` answers
pings automatically).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from typing import Any

import msgspec
from loguru import logger
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

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
_CONN_ERRORS = (OSError, ConnectionClosed, InvalidHandshake, asyncio.TimeoutError, EOFError)

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

    async def run(self) -> None:
        """Connect, subscribe and stream until cancelled; reconnect with backoff on any failure."""
        attempt = 0
        while True:
            try:
                await self._session()
                attempt = 0
            except asyncio.CancelledError:
                raise
            except InvalidURI as exc:
                raise ValueError(f"{self.venue} websocket URL {exc.uri!r} is not a ws:// or wss:// URL") from exc
            except _CONN_ERRORS as exc:
                attempt += 1
                delay = backoff_s(attempt, self.backoff_base_s, self.backoff_cap_s)
                logger.warning("{} connection lost or refused ({}: {}); reconnect attempt {} in {:.2f} s",
                               self.venue, type(exc).__name__, exc, attempt, delay)
                await asyncio.sleep(delay)
            for s in self.symbols:
                self.counters.add(s, "reconnects")

    async def _session(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


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
        async with connect(self.url, ping_interval=None, max_size=None, compression=None,
                           open_timeout=_OPEN_TIMEOUT_S, close_timeout=2) as ws:
            self.connections += 1
            self._last_rx_ns = time.time_ns()
            topics = self.topics()
            for s in self.symbols:  # a new connection starts from a new snapshot
                b = self.books[s]
                if b.synced:
                    b.book.clear()
                    b.synced = b.minutes.synced = False
            logger.info("bybit: connected (connection {}); subscribing to {}", self.connections, ", ".join(topics))
            await ws.send(json.dumps({"op": "subscribe", "req_id": f"sub{self.connections}", "args": topics}))
            tasks = [asyncio.create_task(self._ping(ws)), asyncio.create_task(self._resubscriber(ws))]
            try:
                await self._receive(ws)
            finally:
                for t in tasks:
                    t.cancel()

    async def _ping(self, ws: Any) -> None:
        """Send Bybit's heartbeat every ``ping_every_s``; a connection silent for 3 periods is closed (reconnect)."""
        n = 0
        while True:
            await asyncio.sleep(self.ping_every_s)
            silent_s = (time.time_ns() - self._last_rx_ns) / 1e9
            if silent_s > 3 * self.ping_every_s:
                logger.warning("bybit: nothing received for {:.1f} s (not even a pong); reconnecting", silent_s)
                ws.transport.abort()
                return
            n += 1
            await ws.send(json.dumps({"op": "ping", "req_id": f"ping{n}"}))
            logger.debug("bybit: ping {} sent", n)

    async def _resubscriber(self, ws: Any) -> None:
        while True:
            topic = await self._resync.get()
            logger.info("bybit: resubscribing to {} for a new snapshot", topic)
            await ws.send(json.dumps({"op": "unsubscribe", "req_id": f"unsub-{topic}", "args": [topic]}))
            await ws.send(json.dumps({"op": "subscribe", "req_id": f"resub-{topic}", "args": [topic]}))

    async def _receive(self, ws: Any) -> None:
        books, counters, on_frame = self.books, self.counters.by_symbol, self.on_frame
        decode = decode_bybit_book
        clock = time.time_ns
        while True:
            text = await ws.recv(decode=False)
            recv_ns = self._last_rx_ns = clock()
            if text.startswith(b'{"topic":"orderbook.'):
                msg = decode(text)
                sym = msg.data.s
                c = counters.get(sym)
                if c is None:
                    logger.warning("bybit: frame for unsubscribed symbol {!r} ignored: {!r}", sym, text[:120])
                    continue
                c["messages"] += 1
                c["bytes_in"] += len(text)
                if msg.type == "snapshot":
                    c["snapshots"] += 1
                else:
                    c["deltas"] += 1
                book = books[sym]
                before = book.resyncs
                if book.on_message(msg) == "gap":
                    c["gaps"] += 1
                    self._resync.put_nowait(msg.topic)
                if book.resyncs != before:
                    c["resyncs"] += 1
                on_frame(BYBIT_BOOK, sym, recv_ns, msg.ts, text, msg)
            elif text.startswith(b'{"topic":"publicTrade.'):
                sym = text[22:text.index(b'"', 22)].decode()
                c = counters.get(sym)
                if c is None:
                    logger.warning("bybit: trade for unsubscribed symbol {!r} ignored", sym)
                    continue
                c["messages"] += 1
                c["bytes_in"] += len(text)
                c["trades"] += text.count(b'"T":')
                on_frame(BYBIT_TRADE, sym, recv_ns, _ts(text), text)
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
        async with aiohttp.ClientSession() as http, connect(url, ping_interval=None, max_size=None, compression=None,
                                                             open_timeout=_OPEN_TIMEOUT_S, close_timeout=2) as ws:
            self._http = http
            self.connections += 1
            logger.info("binance: connected (connection {}); streams {} subscribed by URL", self.connections,
                        ", ".join(self.streams()))
            self.confirmed.set()
            # After a reconnect the book carries on only if the first diff chains (pu == previous u, Binance's
            # rule); a diff missed while away breaks the chain, which clears the book and fetches a new REST
            # snapshot. The raw file then replays identically through the ETL (same frames, same order).
            tasks: list[asyncio.Task] = []
            try:
                await self._receive(ws, tasks)
            finally:
                for t in tasks:
                    t.cancel()
                self._fetching.clear()

    async def _receive(self, ws: Any, tasks: list[asyncio.Task]) -> None:
        books, counters, on_frame = self.books, self.counters.by_symbol, self.on_frame
        clock = time.time_ns
        want_book = "book" in self.channels
        while True:
            text = await ws.recv(decode=False)
            recv_ns = clock()
            at = text.find(b"@")
            sym = text[11:at].decode().upper() if text.startswith(b'{"stream":"') and at > 0 else ""
            book = books.get(sym)
            if book is None:
                logger.debug("binance: ignored frame {!r}", text[:200])
                continue
            c = counters[sym]
            c["messages"] += 1
            c["bytes_in"] += len(text)
            what = book.on_frame(text)
            if what == "bbo":
                c["bbo"] += 1
                on_frame(BINANCE_BBO, sym, recv_ns, 0, text)
                continue
            if what == "trade":
                c["trades"] += 1
                on_frame(BINANCE_TRADE, sym, recv_ns, 0, text)
                continue
            c["deltas"] += 1
            if what == "gap":
                c["gaps"] += 1
            on_frame(BINANCE_DEPTH, sym, recv_ns, 0, text, book.last_event)
            if want_book and book.needs_snapshot and sym not in self._fetching:
                self._fetching.add(sym)
                tasks.append(asyncio.create_task(self._snapshot(sym)))

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
