"""The websocket plumbing of the recorder's clients (on ``picows``): connect, listen, close, send.

A :class:`_Listener` hands whole messages to a callback; :func:`_connection` opens a
connection within ``_OPEN_TIMEOUT_S``; :func:`_until_closed` waits for its end and closes it
with code 1000 (normal closure, RFC 6455 section 7.4.1) when the recorder stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any, cast

from picows import WSCloseCode, WSError, WSInvalidURL, WSListener, WSMsgType, ws_connect

__all__ = ["_Listener", "_connection", "_until_closed", "_send", "_CONN_ERRORS", "_OPEN_TIMEOUT_S"]

_OPEN_TIMEOUT_S = 10.0
_MAX_FRAME_BYTES = 64 << 20  # a REST-sized snapshot over the websocket is ~1 MB; refuse anything absurd
_CONN_ERRORS = (OSError, WSError, asyncio.TimeoutError, EOFError)


class _Listener(WSListener):
    """picows callbacks of one connection: whole messages to ``on_message(bytes)``, errors kept for the session."""

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
    """Open a websocket to ``url`` (TCP, TLS for wss, handshake) within ``_OPEN_TIMEOUT_S``."""
    try:
        transport, listener = await asyncio.wait_for(
            ws_connect(lambda: _Listener(on_message), url, websocket_handshake_timeout=_OPEN_TIMEOUT_S,
                       max_frame_size=_MAX_FRAME_BYTES, enable_auto_pong=True, logger_name="record"),
            _OPEN_TIMEOUT_S)
    except WSInvalidURL as exc:
        raise ValueError(f"websocket URL {url!r} is not a ws:// or wss:// URL: {exc}") from exc
    return transport, cast(_Listener, listener)  # the one the factory above made


async def _until_closed(transport: Any, listener: _Listener) -> None:
    """Wait until the connection is down; re-raise the listener's error, else raise ConnectionResetError."""
    try:
        await transport.wait_disconnected()
    finally:
        if not transport.is_disconnected:  # cancelled (the recorder stops): close politely, then drop
            with contextlib.suppress(Exception):
                transport.send_close(WSCloseCode.OK, b"recorder stopped")  # picows' default is 0, not a valid code
            transport.disconnect()
    if listener.error is not None:
        raise listener.error
    raise ConnectionResetError(f"the server closed the connection (close code {listener.close_code})"
                               if listener.close_code is not None else "the connection was dropped")


def _send(transport: Any, obj: Any) -> None:
    """Send ``obj`` as one JSON text frame."""
    transport.send(WSMsgType.TEXT, json.dumps(obj).encode())

