"""Market data: streaming readers, order-book reconstruction, validation and 1-minute bars.

Typical use (the ETL stage does this per file, in worker processes)::

    from quantnb.data import ingest_file, merge_parts
    parts = [ingest_file(p).bars for p in paths]          # partial bars + QualityReport per file
    for (instrument, day), bars in merge_parts(parts).items():  # "venue/market/SYMBOL", BAR_SCHEMA
        ...

Sources (by file name, see :func:`~quantnb.data._io.detect_source`): Bybit v5 order-book files
(``YYYY-MM-DD_SYMBOL_obN.data[.zip]``), Binance USD-M or spot stream captures
(``SYMBOL_YYYYMMDD.gz``), Binance public trades CSV (``SYMBOL-trades-*.csv``) and
1-minute OHLCV CSV (``SYMBOL_..._1m.csv``); the venues' public archive files the download
stage fetches: Binance ``SYMBOL-1m-*``, ``-aggTrades-``, ``-bookTicker-`` and
``-fundingRate-`` zips (a funding series, ``FileIngest.funding``, not bars) and Bybit trades
(``SYMBOL2024-08-08.csv.gz``), read by :mod:`quantnb.data._archive_csv`.

Final bar columns (``BAR_SCHEMA``), one row per minute with data, per instrument and UTC day:

- ``ts``: minute start, Datetime[us, UTC]; ``venue, market, symbol``: the instrument
  (e.g. ``bybit, linear, BTCUSDT``; ``binance, spot, BTCUSDT``). Two instruments never
  share a frame.
- ``open, high, low, close``: quote currency per base unit; ``volume``: base units for
  trades sources, as given by the file for an OHLCV CSV (the bundled BTC-PERP file is in
  USD notional), null for a book mid; ``ohlcv_source`` says which.
- ``n_trades``, ``buy_volume`` (taker buys, base units): from trades only.
- ``mid_close, micro_price_close``: book at the end of the minute; ``spread_bps_mean``:
  mean over the minute's book updates of ``1e4 * (ask - bid) / mid``.
- ``bid_depth_10, ask_depth_10``: summed size of the top 10 levels per side at the
  close, base units; ``imbalance_10 = (bid_depth_10 - ask_depth_10) / (bid_depth_10 + ask_depth_10)``.
- ``n_book_updates``: book messages applied in the minute; ``resyncs``: book rebuilds
  from a later snapshot in the minute.
- ``gap_before``: the symbol's previous bar is 2 minutes or more earlier.
"""

from __future__ import annotations

from quantnb.data._archive import BINANCE_TYPES, BYBIT_TYPES, ArchiveFile, default_base_url, plan_files
from quantnb.data._bar_reader import check_bars, read_bar_files, read_bars
from quantnb.data._bar_rules import BAR_RULES, BarFinding, Verdict, bar_iso, check_bar, data_columns
from quantnb.data._bars import GAP_MIN, BookMinutes, TradeBuffer
from quantnb.data._binance import DECODE_FRAME, DECODE_SNAPSHOT, BinanceBook, Depth, Trade
from quantnb.data._book import OrderBook
from quantnb.data._ingest import ingest_file
from quantnb.data._inputs import check_regular_file, expand_glob, item_key, safe_token, shard_stem, traversed_folder
from quantnb.data._io import MARKET_RE, markets_by_kind
from quantnb.data._merge import book_conflicts, instrument_path, merge_parts
from quantnb.data._quality import COUNTERS, QualityReport
from quantnb.data._schema import BAR_SCHEMA, BINANCE_BOOK, BINANCE_TRADES, BYBIT_BOOK, conform_parts

__all__ = [
    "ingest_file", "merge_parts", "book_conflicts", "instrument_path",
    "expand_glob", "item_key", "shard_stem", "check_regular_file", "traversed_folder",
    "OrderBook", "QualityReport", "BAR_SCHEMA",
    "read_bars", "read_bar_files", "check_bars",
    "BAR_RULES", "BarFinding", "Verdict", "bar_iso", "check_bar", "data_columns",
    "ArchiveFile",
    "BINANCE_BOOK",
    "BINANCE_TRADES",
    "BINANCE_TYPES",
    "BYBIT_BOOK",
    "BYBIT_TYPES",
    "BinanceBook",
    "BookMinutes",
    "COUNTERS",
    "DECODE_FRAME",
    "DECODE_SNAPSHOT",
    "Depth",
    "GAP_MIN",
    "MARKET_RE",
    "markets_by_kind",
    "Trade",
    "TradeBuffer",
    "conform_parts",
    "default_base_url",
    "plan_files",
    "safe_token",
]
