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

from typing import TYPE_CHECKING

from quantnb._lazy import attach

if TYPE_CHECKING:  # the names for type checkers; at run time each loads on first use
    from quantnb.testing.archive_server import ArchiveServer, sample_archive
    from quantnb.testing.binance_server import BinanceLoopbackServer, Fault
    from quantnb.testing.binance_stream_server import BinanceStreamServer
    from quantnb.testing.builders import write_binance_capture, write_bybit_file, write_ohlcv_csv, write_trades_csv
    from quantnb.testing.bybit_ws_server import BybitStreamServer
    from quantnb.testing.ws_server import KlineStreamServer

__getattr__, __dir__ = attach(__name__)
__all__ = [
    "write_bybit_file", "write_binance_capture", "write_ohlcv_csv", "write_trades_csv",
    "BinanceLoopbackServer", "Fault", "KlineStreamServer", "BybitStreamServer", "BinanceStreamServer",
    "ArchiveServer", "sample_archive",
]
