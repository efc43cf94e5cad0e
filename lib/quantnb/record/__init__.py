"""Live order-book recording: venue websocket clients, live books on the ETL's code, and sinks.

- :class:`BybitClient` (v5 public, linear/spot: ``orderbook.<depth>.<SYMBOL>``,
  ``publicTrade.<SYMBOL>``) and :class:`BinanceClient` (USD-M: ``@depth@100ms`` synced to a
  REST snapshot, ``@trade``, ``@bookTicker``), written on ``picows``.
- :class:`BybitLiveBook`, :class:`BinanceLiveBook`: the ETL's ``OrderBook`` and minute
  aggregation, so recorded-then-ETL'd bars equal the live bars.
- :class:`Recorder` with :class:`RawSink`, :class:`ParquetSink`, :class:`ClickHouseSink`.

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
