"""The Binance USD-M market-stream client: diff depth synced to REST snapshots, trades, bookTicker (on ``picows``).

REST snapshots (``GET /fapi/v1/depth``) are fetched with a timeout (``snapshot_timeout_s``)
and retried with the project's retry policy (:class:`quantnb.retry.RetryPolicy`: exponential
backoff with jitter, ``Retry-After`` honoured) until the book syncs: a snapshot that never
arrives is retried, not waited for forever. The HTTP session exists before the websocket
connects, so the first snapshot request of a connection always has it.

At each UTC day roll (receive time) a fresh REST snapshot is fetched and recorded, so the
new day's raw file holds a snapshot the ETL syncs to; the live book is not reset by it. A
"day book" (the ETL's own state machine fed the new day's frames, as the ETL will read the
file) follows until it syncs: a snapshot too old for the diffs that follow it (the ETL's
``U <= lastUpdateId <= u`` rule) is fetched again, so the file is known to sync on its own.

References
----------
Binance USD-M Futures documentation, "How to manage a local order book correctly",
"Order Book" (``GET /fapi/v1/depth``), "WebSocket Market Streams".
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import msgspec
from loguru import logger

from quantnb.errors import RateLimitError, TemporaryError
from quantnb.record._book import BinanceLiveBook
from quantnb.record._clients import Counters, OnFrame, _Client
from quantnb.record._events import BINANCE_BBO, BINANCE_DEPTH, BINANCE_SNAPSHOT, BINANCE_TRADE
from quantnb.record._ws import _connection, _until_closed
from quantnb.retry import RetryPolicy, retry_after_s_from_headers

__all__ = ["BinanceClient"]

_NS_PER_DAY = 86_400 * 10**9


class BinanceClient(_Client):
    """Binance USD-M market streams: ``@depth@100ms`` (or ``@0ms``) synced to REST, ``@trade``, ``@bookTicker``."""

    venue = "binance"

    def __init__(self, symbols: list[str], on_frame: OnFrame, counters: Counters, *, ws_url: str, rest_url: str,
                 channels: tuple[str, ...] = ("book", "trades", "bbo"), depth_speed: str = "100ms",
                 snapshot_limit: int = 1000, market: str = "usdm", snapshot_timeout_s: float = 10.0,
                 **kw: Any) -> None:
        super().__init__(symbols, on_frame, counters, **kw)
        self.ws_url, self.rest_url = ws_url.rstrip("/"), rest_url.rstrip("/")
        self.channels, self.depth_speed, self.snapshot_limit = tuple(channels), depth_speed, snapshot_limit
        self.snapshot_timeout_s = snapshot_timeout_s
        self.snapshot_retry = RetryPolicy(attempts=None, timeout_s=None, wait_initial_s=self.backoff_base_s,
                                          wait_max_s=max(self.backoff_cap_s, self.backoff_base_s),
                                          wait_jitter_s=self.backoff_base_s, max_retry_after_s=math.inf,
                                          quiet_after=5, what="record/binance-snapshot")
        self.books = {s: BinanceLiveBook(s, market) for s in self.symbols}
        self._fetching: set[str] = set()
        self._http: Any = None
        self._http_ready = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._day_books: dict[str, BinanceLiveBook] = {}
        self._market = market
        self.want_book = "book" in self.channels

    def streams(self) -> list[str]:
        return self._stream_names({"book": f"{{low}}@depth@{self.depth_speed}", "trades": "{low}@trade",
                                   "bbo": "{low}@bookTicker"})

    async def _session(self) -> None:
        import aiohttp

        url = f"{self.ws_url}/stream?streams={'/'.join(self.streams())}"
        logger.info("binance: connecting to {}", url)
        async with aiohttp.ClientSession() as http:
            self._http = http  # before the websocket: a snapshot task may start with the first frame
            self._http_ready.set()
            try:
                transport, listener = await _connection(url, self._on_message)
                self._transport, self._paused = transport, False
                self._connected()
                logger.info("binance: connected (connection {}); streams {} subscribed by URL", self.connections,
                            ", ".join(self.streams()))
                self.confirmed.set()
                # After a reconnect the book carries on only if the first diff chains (pu == previous u, Binance's
                # rule); a diff missed while away breaks the chain, which clears the book and fetches a new REST
                # snapshot. The raw file then replays identically through the ETL (same frames, same order).
                self._tasks = [asyncio.create_task(self._watchdog(transport))]
                try:
                    await _until_closed(transport, listener)
                finally:
                    for t in self._tasks:
                        t.cancel()
                    self._fetching.clear()
            finally:
                self._http_ready.clear()
                self._http = None

    def _watch_book(self) -> bool:
        return self.want_book

    def _invalidate(self, sym: str | None) -> None:
        """Drop the book of ``sym`` (all when None): the next diff fetches a new REST snapshot."""
        for s in [sym] if sym else self.symbols:
            d = self.books[s].depth
            if d.bars.synced or d.snapshot_id is not None:
                d.unsync()

    def _on_message(self, text: bytes) -> None:
        """Handle one frame (called by picows on the event loop, as it is parsed)."""
        recv_ns = self.clock_ns()
        at = text.find(b"@")
        sym = text[11:at].decode("utf-8", "replace").upper() if text.startswith(b'{"stream":"') and at > 0 else ""
        book = self.books.get(sym)
        if book is None:
            logger.debug("binance: ignored frame {!r}", text[:200])
            return
        c = self.counters.by_symbol[sym]
        try:
            what = book.on_frame(text)
        except msgspec.DecodeError as exc:  # truncated JSON, or wrong types (ValidationError)
            self._bad_frame(text, exc, recv_ns, sym)
            if b"@depth" in text[:60]:
                self._invalidate(sym)
                self._fetch(sym)
            return
        c["messages"] += 1
        c["bytes_in"] += len(text)
        if recv_ns >= self._day_end[sym]:  # the first frame of a UTC day (receive time)
            if self._day_end[sym] >= 0:
                self._day_roll(sym)
            self._day_end[sym] = (recv_ns // _NS_PER_DAY + 1) * _NS_PER_DAY
        day_book = self._day_books.get(sym)
        if day_book is not None and what != "bbo" and what != "trade":  # as the ETL will read the new day's file
            day_book.on_frame(text)
            if day_book.synced:  # the new day's file syncs on its own
                del self._day_books[sym]
            elif day_book.needs_snapshot:
                self._fetch(sym)
        if what == "bbo":
            c["bbo"] += 1
            self._check(sym, c, text, False)
            self.on_frame(BINANCE_BBO, sym, recv_ns, 0, text)
            return
        if what == "trade":
            c["trades"] += 1
            self._check(sym, c, text, False)
            self.on_frame(BINANCE_TRADE, sym, recv_ns, 0, text)
            return
        c["deltas"] += 1
        if what == "gap":
            c["gaps"] += 1
        crossed = book.synced and book.book.is_crossed
        if crossed or text.find(b"n") >= 0 or text.find(b"N") >= 0:
            self._check(sym, c, text, crossed)
        self.on_frame(BINANCE_DEPTH, sym, recv_ns, 0, text, book.last_event)
        if self.want_book and book.needs_snapshot:
            self._fetch(sym)

    def _fetch(self, sym: str) -> None:
        if sym not in self._fetching:
            self._fetching.add(sym)
            self._tasks.append(asyncio.create_task(self._snapshot(sym)))

    def _day_roll(self, sym: str) -> None:
        """Record a fresh REST snapshot at the UTC day roll, so the new day's raw file can be synced on its own."""
        if not self.want_book:
            return
        logger.info("binance: {} UTC day roll: fetching a REST snapshot for the new day's raw file", sym)
        self._day_books[sym] = BinanceLiveBook(sym, self._market)
        self._fetch(sym)  # a resync snapshot already on its way serves the new day's file too

    async def _get_snapshot(self, sym: str) -> tuple[int, bytes]:
        """GET one depth snapshot; retry timeouts, connection errors and non-200 replies (:attr:`snapshot_retry`)."""
        return await self.snapshot_retry.acall(self._get_snapshot_once, sym)

    async def _get_snapshot_once(self, sym: str) -> tuple[int, bytes]:
        import aiohttp

        what = f"GET /fapi/v1/depth {sym} failed"
        await self._http_ready.wait()
        try:
            async with self._http.get(f"{self.rest_url}/fapi/v1/depth",
                                      params={"symbol": sym, "limit": str(self.snapshot_limit)},
                                      timeout=aiohttp.ClientTimeout(total=self.snapshot_timeout_s)) as resp:
                text = (await resp.read()).strip().replace(b"\n", b"")  # one line in the raw file
                if resp.status == 429 or resp.status == 418:
                    raise RateLimitError(f"{what}: HTTP {resp.status}: {text[:200]!r}; the book stays unsynced",
                                         retry_after_s=retry_after_s_from_headers(resp.headers))
                if resp.status != 200:
                    raise TemporaryError(f"{what}: HTTP {resp.status}: {text[:200]!r}; the book stays unsynced")
            return self.clock_ns(), text
        except (TimeoutError, aiohttp.ClientError) as exc:
            why = f"{type(exc).__name__}: {exc}" if str(exc) else f"no reply in {self.snapshot_timeout_s:g} s"
            raise TemporaryError(f"{what}: {why}; the book stays unsynced") from exc

    def _needing(self, sym: str) -> list[BinanceLiveBook]:
        return [b for b in (self.books[sym], self._day_books.get(sym)) if b is not None and b.needs_snapshot]

    async def _snapshot(self, sym: str) -> None:
        """Fetch REST snapshots until the live book (and the new day's book) sync; a too-old one is fetched again."""
        book, c = self.books[sym], self.counters.by_symbol[sym]
        try:
            while self._needing(sym):
                recv_ns, text = await self._get_snapshot(sym)
                before = book.resyncs
                targets = self._needing(sym)
                day_book = self._day_books.get(sym)
                if day_book is not None and day_book not in targets:
                    targets.append(day_book)  # the snapshot goes into the new day's file: its book takes it too
                try:
                    for b in targets:
                        b.on_snapshot(text)
                except msgspec.DecodeError as exc:
                    self._bad_frame(text, exc, recv_ns, sym)
                    await asyncio.sleep(self.snapshot_retry.wait_initial_s)
                    continue
                c["snapshots"] += 1
                if book.resyncs != before:
                    c["resyncs"] += 1
                self.on_frame(BINANCE_SNAPSHOT, sym, recv_ns, 0, text)
                self._check(sym, c, text, False)
                if book in targets and book.synced:
                    logger.info("binance: {} book synced to REST snapshot lastUpdateId={} (best bid/ask {}/{})",
                                sym, book.depth.snapshot_id, book.book.best_bid, book.book.best_ask)
        finally:
            self._fetching.discard(sym)
