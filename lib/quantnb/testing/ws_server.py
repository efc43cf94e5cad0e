"""A loopback websocket server streaming Binance USD-M kline messages from a list of bars.

Each candle is streamed as ``updates_per_bar`` in-progress messages (``"x": false``) then
exactly one closed message (``"x": true``), in the shape of Binance's USD-M
"Kline/Candlestick Streams" (``<symbol>@kline_<interval>``). The stream position survives
reconnections, and :meth:`KlineStreamServer.drop_after` cuts the TCP connection (no close
frame) at a chosen candle, optionally skipping candles while the client is away, so a
client must fill them from REST.

References
----------
Binance USD-M Futures websocket market streams, "Kline/Candlestick Streams".
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable, Sequence

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from quantnb.testing._loopback import LoopbackWebsocketServer

__all__ = ["KlineStreamServer", "kline_message"]

Bar = Sequence[float]  # (open_time_ms, open, high, low, close, volume)


def kline_message(bar: Bar, *, symbol: str, interval: str, interval_ms: int, closed: bool,
                  fraction: float = 1.0) -> str:
    """Return one Binance kline stream message as JSON text.

    Parameters
    ----------
    bar : (open_time_ms, open, high, low, close, volume)
        The candle; for an in-progress message only ``fraction`` of it is shown.
    symbol, interval : str
        Exchange id (``BTCUSDT``) and Binance interval (``1m``).
    interval_ms : int
        Candle length, milliseconds.
    closed : bool
        The ``x`` field: True only on the final message of the candle.
    fraction : float
        Part of the candle elapsed, in (0, 1]; the close is interpolated from the open.
    """
    t, o, h, lo, c, v = (float(x) for x in bar)
    t = int(t)
    close = c if closed else o + (c - o) * fraction
    high, low = (h, lo) if closed else (max(o, close), min(o, close))
    vol = v if closed else v * fraction
    event_ms = t + interval_ms - 1 if closed else t + int(interval_ms * fraction) - 1
    k = {"t": t, "T": t + interval_ms - 1, "s": symbol, "i": interval, "f": 100, "L": 200,
         "o": f"{o:.2f}", "c": f"{close:.2f}", "h": f"{high:.2f}", "l": f"{low:.2f}", "v": f"{vol:.3f}",
         "n": 100, "x": closed, "q": f"{vol * close:.4f}", "V": f"{vol / 2:.3f}", "Q": f"{vol * close / 2:.4f}",
         "B": "0"}
    return json.dumps({"e": "kline", "E": event_ms, "s": symbol, "k": k}, separators=(",", ":"))


@dataclasses.dataclass
class _Drop:
    bar_index: int
    skip_bars: int
    mid_candle: bool


class KlineStreamServer(LoopbackWebsocketServer):
    """Stream kline messages for ``bars`` to any client connecting to ``ws://127.0.0.1:<port>/ws/...``.

    Parameters
    ----------
    bars : sequence of (open_time_ms, open, high, low, close, volume)
        Candles in ascending open time.
    symbol, interval : str
        Exchange id and Binance interval written in the messages.
    interval_ms : int
        Candle length, milliseconds.
    updates_per_bar : int
        In-progress (``"x": false``) messages before each closed one.
    message_delay_s : float
        Pause between messages, seconds (0 = as fast as the socket takes them).
    on_closed : callable, optional
        Called with a candle's open time (ms) when it closes on the server clock, also for
        candles skipped during an outage (before they are skipped); a test uses it to advance
        the REST server's clock.
    """

    _thread_name = "kline-ws-loopback"

    def __init__(self, bars: Sequence[Bar], *, symbol: str = "BTCUSDT", interval: str = "1m",
                 interval_ms: int = 60_000, updates_per_bar: int = 2, message_delay_s: float = 0.0,
                 on_closed: Callable[[int], None] | None = None):
        super().__init__()
        self.bars = list(bars)
        self.symbol, self.interval, self.interval_ms = symbol, interval, interval_ms
        self.updates_per_bar = updates_per_bar
        self.message_delay_s = message_delay_s
        self.on_closed = on_closed
        self.connections = 0  # connections accepted so far
        self.cursor = 0  # index of the next candle to stream
        self.path = f"/ws/{symbol.lower()}@kline_{interval}"
        self._drops: list[_Drop] = []

    def drop_after(self, bar_index: int, *, skip_bars: int = 0, mid_candle: bool = False) -> None:
        """Cut the connection at candle ``bar_index``; resume later at ``bar_index + 1 + skip_bars``.

        Parameters
        ----------
        bar_index : int
            Candle at which the connection dies.
        skip_bars : int
            Candles after it that close while the client is away (never streamed).
        mid_candle : bool
            Die after the first in-progress message of the candle, so its closed message is
            never streamed either; otherwise die right after its closed message.
        """
        self._drops.append(_Drop(bar_index, skip_bars, mid_candle))

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>/ws/<symbol>@kline_<interval>``, the stream's address."""
        return f"ws://127.0.0.1:{self._port}{self.path}"

    async def _serve(self, ws: ServerConnection) -> None:
        if ws.request is None or ws.request.path.lower() != self.path:
            await ws.close(1008, "unknown stream")
            return
        self.connections += 1
        try:
            await self._stream(ws)
        except ConnectionClosed:
            pass  # the client left; the cursor keeps the stream position for its next connection

    async def _stream(self, ws: ServerConnection) -> None:
        while self.cursor < len(self.bars):
            i = self.cursor
            drop = next((d for d in self._drops if d.bar_index == i), None)
            for u in range(self.updates_per_bar):
                await self._send(ws, self.bars[i], False, (u + 1) / (self.updates_per_bar + 1))
                if drop is not None and drop.mid_candle:
                    break
            if drop is None or not drop.mid_candle:
                self._closed(i)
                await self._send(ws, self.bars[i], True, 1.0)
            self.cursor = i + 1
            if drop is not None:
                self._drops.remove(drop)
                if drop.mid_candle:
                    self._closed(i)
                for j in range(i + 1, min(i + 1 + drop.skip_bars, len(self.bars))):
                    self._closed(j)
                self.cursor = i + 1 + drop.skip_bars
                ws.transport.abort()  # no close frame: the client sees a dropped connection
                return
        await ws.wait_closed()

    def _closed(self, i: int) -> None:
        if self.on_closed is not None:
            self.on_closed(int(self.bars[i][0]))

    async def _send(self, ws: ServerConnection, bar: Bar, closed: bool, fraction: float) -> None:
        await ws.send(kline_message(bar, symbol=self.symbol, interval=self.interval,
                                    interval_ms=self.interval_ms, closed=closed, fraction=fraction))
        if self.message_delay_s:
            await asyncio.sleep(self.message_delay_s)
