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

from quantnb.record._binance_client import BinanceClient
from quantnb.record._book import BinanceLiveBook, BybitLiveBook
from quantnb.record._clickhouse import ClickHouseSink
from quantnb.record._clients import (
    BINANCE_REST_URL,
    BINANCE_TESTNET_REST_URL,
    BINANCE_TESTNET_WS_URL,
    BINANCE_WS_URL,
    BYBIT_TESTNET_URLS,
    BYBIT_URLS,
    BybitClient,
    Counters,
)
from quantnb.record._events import EVENT_SCHEMA, events_frame
from quantnb.record._recorder import Recorder, RecorderConfig
from quantnb.record._sinks import ParquetSink, RawSink, read_events, repair_raw_file

__all__ = [
    "BybitClient", "BinanceClient", "Counters", "BybitLiveBook", "BinanceLiveBook",
    "Recorder", "RecorderConfig", "RawSink", "ParquetSink", "ClickHouseSink", "read_events", "repair_raw_file",
    "EVENT_SCHEMA", "events_frame", "BYBIT_URLS", "BYBIT_TESTNET_URLS", "BINANCE_WS_URL", "BINANCE_REST_URL",
    "BINANCE_TESTNET_WS_URL", "BINANCE_TESTNET_REST_URL",
]
