"""A loopback websocket server speaking the Bybit v5 public stream protocol from recorded frames.

:class:`BybitStreamServer` listens on ``127.0.0.1`` (ephemeral port) at ``/v5/public/linear``
and ``/v5/public/spot``. A client subscribes with ``{"op":"subscribe","args":[topics]}`` and
gets one acknowledgement per message; ``{"op":"ping"}`` is answered with Bybit's pong.
The server replays a script of frames (by default the real ``orderbook.200.BTCUSDT`` frames
of ``data/samples/bybit/2026-08-09_BTCUSDT_ob200.data``), sending only the subscribed
topics' frames; the script position survives reconnections. On each (re)subscription to an
order-book topic the server first sends a ``snapshot`` of its current book (as Bybit does),
then the following ``delta`` frames. Faults: :meth:`BybitStreamServer.drop_after` cuts the
TCP connection (no close frame) after a frame, :meth:`BybitStreamServer.gap_at` skips a
delta (the client sees the update id ``u`` jump), :meth:`BybitStreamServer.inject_after` sends
an arbitrary (e.g. truncated or ill-typed) frame, :meth:`BybitStreamServer.stall_after` stops
the data on a connection that keeps answering pings. ``close_codes`` records the code of
every close frame a client sent.

References
----------
Bybit v5 API documentation, "WebSocket Stream > Connect" (subscribe, ping/pong, heartbeat
every 20 s) and "Public > Orderbook" / "Public > Trade" (frame layouts).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path

import msgspec
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from quantnb.testing._loopback import ScriptedStreamServer, apply_levels

__all__ = ["BybitStreamServer", "load_bybit_frames", "SAMPLE_OB200"]

SAMPLE_OB200 = Path(__file__).resolve().parents[3] / "data" / "samples" / "bybit" / "2026-08-09_BTCUSDT_ob200.data"
_decode = msgspec.json.Decoder().decode


def load_bybit_frames(path: str | Path = SAMPLE_OB200) -> list[str]:
    """Return the lines of a Bybit order-book archive file (each one websocket frame), newline stripped.

    Parameters
    ----------
    path : str or pathlib.Path, default SAMPLE_OB200
        A Bybit ``ob200.data`` archive file (one JSON frame per line).
    """
    return [ln for ln in Path(path).read_text().splitlines() if ln.strip()]


def trade_frame(symbol: str, ts_ms: int, price: str, size: str, side: str, seq: int, trade_id: str) -> str:
    """Return one ``publicTrade.<SYMBOL>`` frame in Bybit's layout (one trade).

    Parameters
    ----------
    symbol, ts_ms, price, size, side, seq, trade_id
        Bybit's ``s``; ``T`` and ``ts`` (epoch ms); ``p`` and ``v`` (quote per base unit, base units,
        decimal strings as Bybit sends them); ``S`` (taker side, ``"Buy"`` or ``"Sell"``); ``seq``; ``i``.

    References
    ----------
    Bybit v5 API docs, "WebSocket Stream > Public > Trade".
    """
    return json.dumps({"topic": f"publicTrade.{symbol}", "type": "snapshot", "ts": ts_ms,
                       "data": [{"T": ts_ms, "s": symbol, "S": side, "v": size, "p": price, "L": "PlusTick",
                                 "i": trade_id, "BT": False, "RPI": False, "seq": seq}]}, separators=(",", ":"))


class _TopicBook:
    """The server's copy of one order-book topic (price strings to size strings), for snapshots."""

    def __init__(self) -> None:
        self.b: dict[str, str] = {}
        self.a: dict[str, str] = {}
        self.u = 0
        self.seq = 0
        self.ts = 0
        self.symbol = ""

    def apply(self, msg: dict) -> None:
        d = msg["data"]
        if msg["type"] == "snapshot":
            self.b, self.a = {}, {}
        apply_levels(self.b, d["b"])
        apply_levels(self.a, d["a"])
        self.u, self.seq, self.ts, self.symbol = d["u"], d.get("seq", 0), msg["ts"], d["s"]

    def snapshot(self, topic: str) -> str:
        bids = sorted(self.b.items(), key=lambda kv: -float(kv[0]))
        asks = sorted(self.a.items(), key=lambda kv: float(kv[0]))
        return json.dumps({"topic": topic, "type": "snapshot", "ts": self.ts,
                           "data": {"s": self.symbol, "b": [list(x) for x in bids], "a": [list(x) for x in asks],
                                    "u": self.u, "seq": self.seq}, "cts": self.ts}, separators=(",", ":"))


class BybitStreamServer(ScriptedStreamServer):
    """Replay Bybit v5 public frames to websocket clients on ``127.0.0.1``.

    Parameters
    ----------
    frames : sequence of str, optional
        The script, one JSON frame each, in sending order; each frame's ``topic`` routes
        it. Default: the bundled ``orderbook.200.BTCUSDT`` sample.
    message_delay_s : float
        Pause between frames, seconds (0: as fast as the socket takes them).
    loop : bool
        Start the script again at its end (the benchmark's endless stream); a book
        topic restarts with its snapshot frame.
    start_delay_s : float
        Pause after a subscription's acknowledgement before streaming.
    ssl_context : ssl.SSLContext, optional
        Serve ``wss://`` (TLS) with this server context; :meth:`url` then names ``localhost``.
    """

    _thread_name = "bybit-ws-loopback"

    def __init__(self, frames: Sequence[str] | None = None, *, message_delay_s: float = 0.0, loop: bool = False,
                 start_delay_s: float = 0.0, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__()
        self.ssl_context = ssl_context
        self.frames = list(frames) if frames is not None else load_bybit_frames()
        self.topics = [_decode(f)["topic"] for f in self.frames]
        self.message_delay_s = message_delay_s
        self.start_delay_s = start_delay_s
        self.loop = loop
        self.connections = 0  # connections accepted
        self.pings = 0  # pings answered
        self.pongs_enabled = True  # False: a server that went silent (the client must reconnect)
        self.subscriptions: list[list[str]] = []  # topics of every subscribe message received
        self.sent: list[str] = []  # every frame sent (snapshots built on subscription too), in order; not with loop
        self.n_sent = 0
        self.done = threading.Event()  # set when the script has been streamed to its end
        self.cursor = 0
        self._books: dict[str, _TopicBook] = {}
        self._drops: set[int] = set()
        self._stalls: set[int] = set()
        self.close_codes: list[int] = []  # of each connection a client closed with a close frame

    # -- faults -----------------------------------------------------------------------------
    def drop_after(self, index: int) -> None:
        """Cut the connection (no close frame) right after script frame ``index`` is sent.

        Parameters
        ----------
        index : int
            Index in the script of the last frame sent before the cut.
        """
        self._drops.add(index)

    def stall_after(self, index: int) -> None:
        """Stop sending data on the connection after script frame ``index`` (pings are still answered).

        The next connection goes on from the following frame.

        Parameters
        ----------
        index : int
            Index in the script of the last frame sent before the silence.
        """
        self._stalls.add(index)

    # -- life cycle -------------------------------------------------------------------------
    def url(self, market: str = "linear") -> str:
        """``ws://127.0.0.1:<port>/v5/public/<market>`` (``wss://localhost:...`` with ``ssl_context``).

        Parameters
        ----------
        market : str, default "linear"
            The v5 public channel path (``linear``, ``spot``, ``inverse``...).
        """
        if self.ssl_context is not None:  # a certificate names a host: localhost
            return f"wss://localhost:{self._port}/v5/public/{market}"
        return f"ws://127.0.0.1:{self._port}/v5/public/{market}"

    def _serve_options(self) -> dict:
        """Return ``serve``'s options: no size limit, no compression, TLS with ``ssl_context``."""
        return {"max_size": None, "compression": None, "ssl": self.ssl_context}

    # -- protocol -----------------------------------------------------------------------------
    async def _serve(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ""
        if path not in ("/v5/public/linear", "/v5/public/spot", "/v5/public/inverse"):
            await ws.close(1008, "unknown path")
            return
        self.connections += 1
        conn_id = uuid.uuid4().hex[:20]
        subscribed: set[str] = set()
        streamer: asyncio.Task | None = None
        try:
            async for text in ws:
                msg = json.loads(text)
                op = msg.get("op")
                req_id = msg.get("req_id", "")
                if op == "ping":
                    self.pings += 1
                    if not self.pongs_enabled:
                        continue
                    await ws.send(json.dumps({"success": True, "ret_msg": "pong", "conn_id": conn_id,
                                              "req_id": req_id, "op": "ping"}, separators=(",", ":")))
                elif op in ("subscribe", "unsubscribe"):
                    args = list(msg.get("args", []))
                    if op == "subscribe":
                        self.subscriptions.append(args)
                    await ws.send(json.dumps({"success": True, "ret_msg": "", "conn_id": conn_id, "req_id": req_id,
                                              "op": op}, separators=(",", ":")))
                    if op == "unsubscribe":
                        subscribed.difference_update(args)
                        continue
                    if self.start_delay_s:
                        await asyncio.sleep(self.start_delay_s)
                    for topic in args:
                        subscribed.add(topic)
                        book = self._books.get(topic)
                        if topic.startswith("orderbook.") and book is not None and book.symbol:
                            await self._send(ws, book.snapshot(topic))
                    if streamer is None:
                        streamer = asyncio.create_task(self._stream(ws, subscribed))
                else:
                    await ws.send(json.dumps({"success": False, "ret_msg": f"unknown op {op!r}",
                                              "conn_id": conn_id, "req_id": req_id, "op": op}))
        except ConnectionClosed:
            pass
        finally:
            if streamer is not None:
                streamer.cancel()
            if ws.protocol.close_rcvd is not None:
                self.close_codes.append(ws.protocol.close_rcvd.code)

    async def _send(self, ws: ServerConnection, frame: str) -> None:
        await ws.send(frame)
        self.n_sent += 1
        if not self.loop:
            self.sent.append(frame)

    async def _stream(self, ws: ServerConnection, subscribed: set[str]) -> None:
        n = len(self.frames)
        try:
            while True:
                if self.cursor >= n:
                    if not self.loop:
                        self.done.set()
                        return
                    self.cursor = 0
                i = self.cursor
                self.cursor += 1
                topic, frame = self.topics[i], self.frames[i]
                if topic.startswith("orderbook."):
                    book = self._books.get(topic)
                    if book is None:
                        book = self._books[topic] = _TopicBook()
                    if not self.loop:  # the endless benchmark stream never resubscribes
                        book.apply(_decode(frame))
                if i in self._gaps:
                    self._gaps.discard(i)
                    continue
                if topic in subscribed:
                    await self._send(ws, frame)
                    for extra in self._inject.pop(i, []):
                        await self._send(ws, extra)
                    if self.message_delay_s:
                        await asyncio.sleep(self.message_delay_s)
                    elif self.n_sent % 64 == 0:
                        await asyncio.sleep(0)
                if i in self._stalls:
                    self._stalls.discard(i)
                    return  # silence: the connection stays open and answers pings
                if i in self._drops:
                    self._drops.discard(i)
                    ws.transport.abort()
                    return
        except ConnectionClosed:
            return
