"""The life cycle shared by quantnb's loopback websocket servers (Bybit, Binance, klines).

Each server runs ``websockets``' asyncio server on ``127.0.0.1`` (an ephemeral port) in an
event loop of its own daemon thread, so a test's own thread stays free to drive the client.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Self

from websockets.asyncio.server import ServerConnection, serve

__all__ = ["LoopbackWebsocketServer", "ScriptedStreamServer", "apply_levels"]


def apply_levels(side: dict[str, str], levels: list[list[str]]) -> None:
    """Apply a depth message's ``[price, size]`` strings to one side of a book (size 0 deletes the level)."""
    for p, q in levels:
        if float(q) == 0.0:
            side.pop(p, None)
        else:
            side[p] = q


class LoopbackWebsocketServer:
    """Start, stop and context-manager protocol of a loopback websocket server.

    Subclasses implement ``_serve(ws)`` (one connection), may override :meth:`_serve_options` and
    ``_thread_name``, and call ``super().__init__()``.
    """

    _thread_name = "ws-loopback"

    def __init__(self) -> None:
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._port = 0

    @property
    def port(self) -> int:
        """The listening TCP port (0 before :meth:`start`)."""
        return self._port

    def start(self) -> Self:
        """Start the event-loop thread and listen on an ephemeral port; return self."""
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name=self._thread_name,
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"{type(self).__name__} (loopback websocket server) did not start within 10 s")
        return self

    def stop(self) -> None:
        """Close every connection and stop the server thread (waits up to 10 s)."""
        if self._aloop is not None and self._stop is not None:
            self._aloop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve_options(self) -> dict[str, Any]:
        """Return extra keyword arguments of ``serve`` (none by default)."""
        return {}

    async def _serve(self, ws: ServerConnection) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def _main(self) -> None:
        self._aloop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self._serve, "127.0.0.1", 0, **self._serve_options()) as server:
            self._port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop.wait()


class ScriptedStreamServer(LoopbackWebsocketServer):
    """A loopback server that replays a script of frames, with the faults every venue's replay shares.

    Subclasses consume :attr:`_gaps` (script indices never sent) and :attr:`_inject` (frames sent
    as is after a script index) while they replay.
    """

    def __init__(self) -> None:
        super().__init__()
        self._gaps: set[int] = set()
        self._inject: dict[int, list[str]] = {}

    def gap_at(self, index: int) -> None:
        """Never send script frame ``index`` (a book update): the client sees its sequence jump."""
        self._gaps.add(index)

    def inject_after(self, index: int, text: str) -> None:
        """Send ``text`` as one frame, as is, right after script frame ``index``."""
        self._inject.setdefault(index, []).append(text)
