"""Fixture builders and loopback exchange servers that tests and users share.

- :mod:`quantnb.testing.builders`: seeded writers of small Bybit, Binance and CSV files,
  also with defects (crossed book, sequence gap, truncated line, NaN price, ...).
- :class:`BinanceLoopbackServer`: Binance USD-M REST endpoints on 127.0.0.1 with a matching
  engine and fault injection (:class:`Fault`); point ccxt at it with
  ``quantnb.live.make_exchange(mode, base_url=server.base_url)``.
- :class:`KlineStreamServer`: a websocket server streaming Binance kline messages.
- :class:`BybitStreamServer`, :class:`BinanceStreamServer`: Bybit v5 public and Binance USD-M
  market-stream servers replaying the real samples (subscribe/ack, ping/pong, snapshots and
  deltas, REST depth snapshots, injected drops and sequence gaps).
- :class:`ArchiveServer`: the venues' public archives (Binance data.binance.vision with
  ``.CHECKSUM`` files, Bybit) over HTTP with Range requests and injected faults;
  :func:`sample_archive` fills it from the bundled samples.

Importing the servers pulls in ccxt and websockets, so they load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from quantnb.testing.builders import (
    BuiltFile,
    write_binance_capture,
    write_bybit_file,
    write_ohlcv_csv,
    write_trades_csv,
)

__all__ = [
    "BuiltFile",
    "write_bybit_file",
    "write_binance_capture",
    "write_ohlcv_csv",
    "write_trades_csv",
    "BinanceLoopbackServer",
    "SymbolSpec",
    "Fault",
    "KlineStreamServer",
    "kline_message",
    "BybitStreamServer",
    "BinanceStreamServer",
    "ArchiveServer",
    "sample_archive",
]

_LAZY = {
    "BinanceLoopbackServer": "quantnb.testing.binance_server",
    "SymbolSpec": "quantnb.testing.binance_server",
    "Fault": "quantnb.testing.binance_server",
    "KlineStreamServer": "quantnb.testing.ws_server",
    "kline_message": "quantnb.testing.ws_server",
    "BybitStreamServer": "quantnb.testing.bybit_ws_server",
    "BinanceStreamServer": "quantnb.testing.binance_stream_server",
    "ArchiveServer": "quantnb.testing.archive_server",
    "sample_archive": "quantnb.testing.archive_server",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'quantnb.testing' has no attribute {name!r}")
