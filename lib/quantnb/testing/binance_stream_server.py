"""A loopback Binance USD-M market-stream server (websocket + REST depth snapshot) from a real capture.

:class:`BinanceStreamServer` listens on ``127.0.0.1`` (ephemeral port) and serves, on the
same port:

- websocket combined streams ``/stream?streams=<symbol>@depth@100ms/<symbol>@trade/...`` and
  single raw streams ``/ws/<stream>``, frames ``{"stream":..,"data":{..}}`` (combined) or the
  bare event (raw), taken unchanged from a capture in ``<recv_ns> <json>`` gzip format (by
  default ``data/samples/binance_usdm/BTCUSDT_20240808.gz``);
- REST ``GET /fapi/v1/depth?symbol=..&limit=..``: a snapshot of the server's book after the
  last diff it streamed, ``{"lastUpdateId","E","T","bids","asks"}``.

The server's book starts from the capture's REST snapshot; diffs before the sync point are
not streamed. The script position survives reconnections. The server pings every
``ping_interval_s`` (Binance pings every 3 minutes; the client must answer pong).
Faults: :meth:`BinanceStreamServer.drop_after` cuts the TCP connection after a frame,
:meth:`BinanceStreamServer.gap_at` skips a depth diff (``pu`` no longer matches),
:meth:`BinanceStreamServer.inject_after` sends an arbitrary frame,
:meth:`BinanceStreamServer.stall_after` leaves a connection open and silent,
:meth:`BinanceStreamServer.hang_rest` makes snapshot requests wait without a reply.
``close_codes`` records the code of every close frame a client sent.

References
----------
Binance USD-M Futures documentation, "WebSocket Market Streams" (combined streams, ping
every 3 minutes), "Diff. Book Depth Streams", "Order Book" (``GET /fapi/v1/depth``) and "How
to manage a local order book correctly".
"""

from __future__ import annotations

import asyncio
import gzip
import http
import json
import threading
from collections.abc import Awaitable, Sequence
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import msgspec
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from quantnb.testing._loopback import ScriptedStreamServer, apply_levels

__all__ = ["BinanceStreamServer", "load_binance_capture", "SAMPLE_CAPTURE"]

SAMPLE_CAPTURE = Path(__file__).resolve().parents[3] / "data" / "samples" / "binance_usdm" / "BTCUSDT_20240808.gz"
_decode = msgspec.json.Decoder().decode


def load_binance_capture(path: str | Path = SAMPLE_CAPTURE, max_frames: int | None = None) -> tuple[str, list[str]]:
    """Split a capture into its first REST snapshot and the stream frames after the sync point.

    Returns ``(snapshot_json, frames)``: frames are the ``{"stream","data"}`` JSON texts that
    follow the snapshot, depth diffs with ``u < lastUpdateId`` left out.

    Parameters
    ----------
    path : str or pathlib.Path, default SAMPLE_CAPTURE
        A gzip capture of ``<recv_ns> <json>`` lines (REST snapshots and combined-stream
        frames), e.g. ``data/samples/binance_usdm/BTCUSDT_20240808.gz``.
    max_frames : int, optional
        Stop after this many frames; all of them when None.
    """
    snapshot = ""
    frames: list[str] = []
    last_id = -1
    with gzip.open(path, "rt") as fh:
        for line in fh:
            payload = line[line.find(" ") + 1:].rstrip("\n")
            if payload.startswith('{"lastUpdateId"'):
                if not snapshot:
                    snapshot = payload
                    last_id = _decode(payload)["lastUpdateId"]
                continue
            if not snapshot:
                continue
            if '"depthUpdate"' in payload[:80] and _decode(payload)["data"]["u"] < last_id:
                continue
            frames.append(payload)
            if max_frames is not None and len(frames) >= max_frames:
                break
    if not snapshot:
        raise ValueError(f"{path}: no REST depth snapshot line in the capture")
    return snapshot, frames


class BinanceStreamServer(ScriptedStreamServer):
    """Replay Binance USD-M stream frames and serve depth snapshots on ``127.0.0.1``.

    Parameters
    ----------
    snapshot : str, optional
        REST depth snapshot JSON the server's book starts from.
    frames : sequence of str, optional
        ``{"stream","data"}`` frames in sending order. Default (with ``snapshot``): the
        bundled BTCUSDT capture.
    message_delay_s : float
        Pause between frames, seconds.
    ping_interval_s : float or None
        Server pings (the client must answer pong); None: never.
    loop : bool
        Start the script again at its end (benchmark); the book is then not tracked.
    """

    _thread_name = "binance-ws-loopback"

    def __init__(self, snapshot: str | None = None, frames: Sequence[str] | None = None, *,
                 message_delay_s: float = 0.0, ping_interval_s: float | None = 5.0, loop: bool = False) -> None:
        super().__init__()
        if snapshot is None or frames is None:
            snapshot, frames = load_binance_capture()
        snap = _decode(snapshot)
        self.bids = {p: q for p, q in snap["bids"]}
        self.asks = {p: q for p, q in snap["asks"]}
        self.last_id = snap["lastUpdateId"]
        self.last_e = snap.get("E", 0)
        self.frames = list(frames)
        self.kinds: list[tuple[str, str]] = []
        for f in self.frames:
            head = f[:120]
            kind = "depth" if "depthUpdate" in head else "trade" if '"e":"trade"' in head else "bookTicker"
            sym = f[f.find('"stream":"') + 10:f.find("@")].lower()
            self.kinds.append((sym, kind))
        self.message_delay_s = message_delay_s
        self.ping_interval_s = ping_interval_s
        self.loop = loop
        self.connections = 0  # websocket connections served
        self.rest_requests = 0  # REST snapshot requests served
        self.sent: list[str] = []  # every data event sent, as JSON text of its frame (not kept with loop)
        self.snapshots: list[str] = []  # every REST snapshot served
        self.n_sent = 0
        self.cursor = 0
        self.done = threading.Event()  # set when the script has been streamed to its end
        self._drops: dict[int, int] = {}
        self._stalls: dict[int, int] = {}
        self._hang: list[float] = []
        self.close_codes: list[int] = []

    def drop_after(self, index: int, skip: int = 0) -> None:
        """Cut the connection (no close frame) right after script frame ``index``; ``skip`` frames pass while away.

        Parameters
        ----------
        index : int
            Index in the script of the last frame sent before the cut.
        skip : int, default 0
            Frames after ``index`` that are never sent (they pass while the client reconnects).
        """
        self._drops[index] = skip

    def stall_after(self, index: int, skip: int = 0) -> None:
        """Stop sending on the connection after script frame ``index``, without closing it.

        The next connection goes on from the following frame, after ``skip`` frames that pass
        (the server's book moves) while the connection is silent.

        Parameters
        ----------
        index : int
            Index in the script of the last frame sent before the silence.
        skip : int, default 0
            Frames after ``index`` that are never sent.
        """
        self._stalls[index] = skip

    def hang_rest(self, count: int, delay_s: float = 30.0) -> None:
        """Hold the next ``count`` snapshot requests ``delay_s`` seconds each before answering.

        Parameters
        ----------
        count : int
            Requests to hold.
        delay_s : float, default 30.0
            How long each is held, seconds.
        """
        self._hang.extend([delay_s] * count)

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:<port>``: the websocket root (``/stream?streams=`` is appended by clients)."""
        return f"ws://127.0.0.1:{self._port}"

    @property
    def rest_url(self) -> str:
        """``http://127.0.0.1:<port>``: the REST root (``/fapi/v1/depth``)."""
        return f"http://127.0.0.1:{self._port}"

    def _serve_options(self) -> dict:
        """Return ``serve``'s options: REST on the same port, no size limit, no compression, pings."""
        return {"process_request": self._http, "max_size": None, "compression": None,
                "ping_interval": self.ping_interval_s}

    # -- REST ---------------------------------------------------------------------------------
    def _http(self, conn: ServerConnection, request: Request) -> Response | Awaitable[Response] | None:
        url = urlsplit(request.path)
        if url.path.startswith(("/stream", "/ws/")):
            return None  # a websocket handshake
        if url.path != "/fapi/v1/depth":
            return self._json(404, {"code": -1, "msg": f"unknown endpoint {url.path}"})
        if self._hang:
            return self._held(conn, request, self._hang.pop(0))
        return self._depth(url)

    async def _held(self, conn: ServerConnection, request: Request, delay_s: float) -> Response:
        await asyncio.sleep(delay_s)
        return self._depth(urlsplit(request.path))

    def _depth(self, url) -> Response:
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        limit = int(q.get("limit", 500))
        bids = sorted(self.bids.items(), key=lambda kv: -float(kv[0]))[:limit]
        asks = sorted(self.asks.items(), key=lambda kv: float(kv[0]))[:limit]
        body = {"lastUpdateId": self.last_id, "E": self.last_e, "T": self.last_e,
                "bids": [list(x) for x in bids], "asks": [list(x) for x in asks]}
        self.rest_requests += 1
        text = json.dumps(body, separators=(",", ":"))
        self.snapshots.append(text)
        return self._json(200, body, text)

    @staticmethod
    def _json(status: int, body: dict, text: str | None = None) -> Response:
        data = (text or json.dumps(body)).encode()
        headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return Response(status, http.HTTPStatus(status).phrase, headers, data)

    # -- streams ------------------------------------------------------------------------------
    async def _serve(self, ws: ServerConnection) -> None:
        url = urlsplit(ws.request.path if ws.request is not None else "")
        if url.path == "/stream":
            streams = parse_qs(url.query).get("streams", [""])[0].split("/")
            combined = True
        else:
            streams, combined = [url.path.removeprefix("/ws/")], False
        wanted: set[tuple[str, str]] = set()
        for s in streams:
            sym, _, rest = s.partition("@")
            kind = "depth" if rest.startswith("depth") else rest
            wanted.add((sym.lower(), kind))
        self.connections += 1
        try:
            await self._stream(ws, wanted, combined)
        except ConnectionClosed:
            pass
        finally:
            if ws.protocol.close_rcvd is not None:
                self.close_codes.append(ws.protocol.close_rcvd.code)

    async def _stream(self, ws: ServerConnection, wanted: set[tuple[str, str]], combined: bool) -> None:
        n = len(self.frames)
        while True:
            if self.cursor >= n:
                if not self.loop:
                    self.done.set()
                    await ws.wait_closed()
                    return
                self.cursor = 0
            i = self.cursor
            self.cursor += 1
            frame = self.frames[i]
            key = self.kinds[i]
            if i in self._gaps:
                self._gaps.discard(i)
                if not self.loop and key[1] == "depth":
                    self._apply(frame)
                continue
            if key[1] == "depth" and not self.loop:
                self._apply(frame)
            if key in wanted:
                out = frame if combined else frame[frame.find('"data":') + 7:-1]
                await ws.send(out)
                self.n_sent += 1
                if not self.loop:
                    self.sent.append(frame)
                for extra in self._inject.pop(i, []):
                    await ws.send(extra)
                if self.message_delay_s:
                    await asyncio.sleep(self.message_delay_s)
                elif self.n_sent % 64 == 0:
                    await asyncio.sleep(0)
            if i in self._stalls:
                self._skip(i, self._stalls.pop(i))
                await ws.wait_closed()  # silent: no frame, no close
                return
            if i in self._drops:
                self._skip(i, self._drops.pop(i))
                ws.transport.abort()
                return

    def _skip(self, i: int, count: int) -> None:
        """Let ``count`` frames after ``i`` pass unsent (they happen while the client is away or deaf)."""
        for j in range(i + 1, min(len(self.frames), i + 1 + count)):
            if self.kinds[j][1] == "depth" and not self.loop:
                self._apply(self.frames[j])
            self.cursor = j + 1

    def _apply(self, frame: str) -> None:
        d = _decode(frame)["data"]
        apply_levels(self.bids, d["b"])
        apply_levels(self.asks, d["a"])
        self.last_id, self.last_e = d["u"], d["E"]
