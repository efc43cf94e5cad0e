"""Live order-book recording: venue websocket clients, live books on the ETL's code, and sinks.

- websocket clients (``record/_clients.py``: Bybit v5 public ``orderbook.<depth>.<SYMBOL>`` and
  ``publicTrade.<SYMBOL>``; ``record/_binance_client.py``: Binance USD-M ``@depth@100ms`` synced to a
  REST snapshot, ``@trade``, ``@bookTicker``), written on ``picows``;
- live books on data's ``OrderBook``, ``BinanceBook`` and minute aggregation (``record/_book.py``), so
  recorded-then-ETL'd bars equal the live bars;
- :class:`Recorder` (configured by :class:`RecorderConfig`) with its raw, Parquet and ClickHouse sinks;
  :meth:`Recorder.call_in_loop` is how the trader's book feed reads the live books.

The recorder stage (:mod:`quantnb.stages.record`) runs a :class:`Recorder` under the run log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantnb._lazy import attach

if TYPE_CHECKING:  # the names for type checkers; at run time each loads on first use
    from quantnb.record._clickhouse import ClickHouseConnection, clickhouse_server_client
    from quantnb.record._clients import (
        BINANCE_REST_URL,
        BINANCE_TESTNET_REST_URL,
        BINANCE_TESTNET_WS_URL,
        BINANCE_WS_URL,
    )
    from quantnb.record._guard import check_identifier
    from quantnb.record._recorder import CLICKHOUSE_PATH, Recorder, RecorderConfig
    from quantnb.record._sinks import read_events

__getattr__, __dir__ = attach(__name__)

__all__ = [
    "Recorder", "RecorderConfig", "read_events", "ClickHouseConnection",
    "BINANCE_WS_URL", "BINANCE_REST_URL", "BINANCE_TESTNET_WS_URL", "BINANCE_TESTNET_REST_URL",
    "CLICKHOUSE_PATH",
    "check_identifier",
    "clickhouse_server_client",
]
