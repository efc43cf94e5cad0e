"""CcxtKlineProvider: REST history plus a websocket kline stream, one event per closed candle.

The stream runs in a background thread (``websockets`` on its own event loop) and hands
closed candles (``"x": true``) to the trading thread through a queue. On every
(re)connection, and whenever a candle arrives after a gap, the missed closed candles are
fetched from REST; candles are keyed by open time, so none is emitted twice.
"""

from __future__ import annotations

import asyncio
import collections
import json
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import ccxt
import websockets
from loguru import logger
from websockets.asyncio.client import connect

from quantnb.errors import TemporaryError
from quantnb.live._feed import DataProvider
from quantnb.live._types import Bar
from quantnb.live._venue import translate_ccxt_error
from quantnb.retry import RetryPolicy, translate_error

__all__ = ["CcxtKlineProvider"]

_CONNECTED = object()
_PAGE = 499  # klines per REST page: weight 2 below 500 (Binance "Kline/Candlestick Data")


class _Failed:
    def __init__(self, reason: str):
        self.reason = reason


class CcxtKlineProvider(DataProvider):
    """Closed candles of a Binance USD-M symbol: REST history, websocket stream, REST gap fills.

    ``volume_in_quote`` emits Binance ``q`` (USDT notional) as ``Bar.volume``, as the bundled
    BTC-PERP training bars count volume; else base units (``v``). ``clock_ms`` (epoch ms) defaults
    to the exchange's clock (``GET /fapi/v1/time``), read before each REST download so local clock
    skew cannot pass a forming candle as closed.

    References
    ----------
    Binance USD-M Futures, "Kline/Candlestick Streams" and "Kline/Candlestick Data" (REST).
    """

    def __init__(self, exchange: Any, symbol: str, timeframe: str, *, ws_url: str, history_bars: int,
                 retry: RetryPolicy, volume_in_quote: bool = False, reconnect_initial_s: float = 0.5,
                 reconnect_max_s: float = 30.0, max_reconnect_failures: int = 10,
                 clock_ms: Callable[[], int] | None = None):
        self._ex = exchange
        self.symbol, self.timeframe = symbol, timeframe
        self._tf_ms = int(exchange.parse_timeframe(timeframe) * 1000)
        self._ws_base = ws_url
        self.history_bars = history_bars
        self.retry = retry
        self.volume_in_quote = volume_in_quote
        self.reconnect_initial_s, self.reconnect_max_s = reconnect_initial_s, reconnect_max_s
        self.max_reconnect_failures = max_reconnect_failures
        self.reconnect = RetryPolicy(attempts=max_reconnect_failures + 1, timeout_s=None,
                                     wait_initial_s=reconnect_initial_s, wait_max_s=reconnect_max_s,
                                     wait_jitter_s=reconnect_initial_s / 2, what="live/feed")
        self._clock_ms = clock_ms
        self.window: collections.deque[Bar] = collections.deque(maxlen=max(history_bars, 1))
        self.connections = self.duplicates_dropped = self.backfilled = 0
        self._q: queue.Queue[Any] = queue.Queue()
        self._pending: collections.deque[Bar] = collections.deque()
        self._last_ms = -1
        self._market_id = ""
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = threading.Event()

    @property
    def ws_url(self) -> str:
        """The full stream URL."""
        if "@kline" in self._ws_base:
            return self._ws_base
        return f"{self._ws_base.rstrip('/')}/{self._market_id.lower()}@kline_{self.timeframe}"

    # --- REST ------------------------------------------------------------------------
    def _rest(self, start_ms: int | None, limit: int) -> list[Bar]:
        req: dict[str, Any] = {"symbol": self._market_id, "interval": self.timeframe, "limit": limit}
        if start_ms is not None:
            req["startTime"] = start_ms

        def fetch() -> tuple[int, list[list[Any]]]:
            try:
                now = self._clock_ms() if self._clock_ms is not None else int(self._ex.fetch_time())
                return now, self._ex.fapiPublicGetKlines(req)
            except ccxt.BaseError as err:
                raise translate_ccxt_error(err, what=f"klines {self.symbol} {self.timeframe}", exchange=self._ex) \
                    from None

        now, rows = self.retry.call(fetch)
        return [self._bar(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[7], "rest") for r in rows if int(r[6]) < now]

    def _bar(self, t: int, o: Any, h: Any, lo: Any, c: Any, v: Any, q: Any, source: str) -> Bar:
        vol, qv = float(v), float(q)
        return Bar(t, float(o), float(h), float(lo), float(c), qv if self.volume_in_quote else vol,
                   quote_volume=qv, source=source)

    def _backfill(self, until_open_ms: int | None) -> None:
        start = self._last_ms + self._tf_ms
        while True:
            rows = [b for b in self._rest(start, _PAGE) if b.open_time_ms > self._last_ms
                    and (until_open_ms is None or b.open_time_ms < until_open_ms)]
            for b in rows:
                self._accept(b)
                self.backfilled += 1
            if len(rows) < _PAGE:
                break
            start = self._last_ms + self._tf_ms
        if rows:
            logger.warning("live/feed: filled candles up to {} from REST after a gap", rows[-1].open_time_ms)

    def _accept(self, bar: Bar) -> None:
        self._pending.append(bar)
        self._last_ms = bar.open_time_ms

    # --- DataProvider ----------------------------------------------------------------
    def warmup(self) -> list[Bar]:
        """Download the last ``history_bars`` closed candles, then start the stream."""
        def load() -> None:
            try:
                self._ex.load_markets()
            except ccxt.BaseError as err:
                raise translate_ccxt_error(err, what="load markets", exchange=self._ex) from None

        self.retry.call(load)
        self._market_id = self._ex.market(self.symbol)["id"]
        history = self._rest(None, min(self.history_bars + 2, 1500))[-self.history_bars:] if self.history_bars else []
        if history:
            self._last_ms = history[-1].open_time_ms
            self.window.extend(history)
        logger.info("live/feed: {} closed {} candles of {} downloaded; streaming {}", len(history),
                    self.timeframe, self.symbol, self.ws_url)
        self._thread = threading.Thread(target=self._run_loop, name="kline-stream", daemon=True)
        self._thread.start()
        return history

    def next_bar(self, timeout_s: float) -> Bar | None:
        """Return the next closed candle, or None after ``timeout_s`` seconds without one.

        Raises TemporaryError after ``max_reconnect_failures`` failed reconnections in a row, or
        when a REST gap fill fails all its retries.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            if self._pending:
                bar = self._pending.popleft()
                self.window.append(bar)
                return bar
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                item = self._q.get(timeout=remaining)
            except queue.Empty:
                return None
            if item is _CONNECTED:
                if self._last_ms >= 0:
                    self._backfill(None)
            elif isinstance(item, _Failed):
                raise TemporaryError(f"kline stream {self.ws_url}: {item.reason}")
            elif item.open_time_ms <= self._last_ms:
                self.duplicates_dropped += 1
            else:
                if self._last_ms >= 0 and item.open_time_ms > self._last_ms + self._tf_ms:
                    self._backfill(item.open_time_ms)
                self._accept(item)

    def fallback(self) -> None:
        """Queue the closed candles after the last one emitted, from REST (the stream is silent)."""
        if self._last_ms >= 0:
            self._backfill(None)

    def close(self) -> None:
        """Stop the stream thread."""
        self._stopping.set()
        alive = self._thread is not None and self._thread.is_alive()
        if alive and self._loop is not None and self._task is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._task.cancel)
            except RuntimeError:  # the loop closed in between: the thread is ending anyway
                pass
        if self._thread is not None:
            self._thread.join(5)

    # --- stream thread ---------------------------------------------------------------
    def _run_loop(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
            if self._stopping.is_set():
                return
            try:
                await self._stream()
            except asyncio.CancelledError:
                pass

        asyncio.run(main())

    async def _stream(self) -> None:
        """Keep the kline stream open: connection attempts retried under :attr:`reconnect`, then ``_Failed``."""
        while not self._stopping.is_set():
            try:
                await self.reconnect.acall(self._connect_once)
            except TemporaryError as err:  # max_reconnect_failures + 1 attempts in a row never connected
                self._q.put(_Failed(f"{self.max_reconnect_failures + 1} reconnection attempts failed, last: "
                                    f"{type(err.__cause__ or err).__name__}"))
                return
            await asyncio.sleep(self.reconnect.wait_s(TemporaryError("closed"), 1) or 0.0)  # it was up: reconnect

    async def _connect_once(self) -> None:
        """Stream until the connection ends; one that never opens is a TemporaryError (retried by the policy)."""
        opened = False
        try:
            async with connect(self.ws_url, open_timeout=10, ping_interval=20, ping_timeout=20,
                               close_timeout=1) as ws:
                opened = True
                self.connections += 1
                self._q.put(_CONNECTED)
                async for raw in ws:
                    bar = self._parse(raw)
                    if bar is not None:
                        self._q.put(bar)
            logger.warning("live/feed: kline stream closed by the server; reconnecting")
        except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as err:
            temp = translate_error(err, what=f"kline stream {self.ws_url}")
            if not isinstance(temp, TemporaryError):
                temp = TemporaryError(str(temp))
            if not opened:
                raise temp from err
            logger.warning("live/feed: kline stream lost ({}); reconnecting", temp)

    def _parse(self, raw: str | bytes) -> Bar | None:
        msg = json.loads(raw)
        msg = msg.get("data", msg) if isinstance(msg, dict) else None
        if not isinstance(msg, dict) or msg.get("e") != "kline":
            return None
        k = msg["k"]
        if not k.get("x"):
            return None
        return self._bar(int(k["t"]), k["o"], k["h"], k["l"], k["c"], k["v"], k["q"], "ws")
