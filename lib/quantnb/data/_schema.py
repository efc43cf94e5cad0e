"""Column schemas of partial and final bars, and the source kinds with their merge priority."""

from __future__ import annotations

import polars as pl

UTC_MINUTE = pl.Datetime("us", "UTC")

# Source kinds a FileIngest can produce (the ``source`` column of partial bars).
TRADES_CSV = "trades_csv"
BINANCE_TRADES = "binance_trades"
OHLCV_CSV = "ohlcv_csv"
BYBIT_BOOK = "bybit_book"
BINANCE_BOOK = "binance_book"
BINANCE_KLINES = "binance_klines"
BINANCE_AGGTRADES = "binance_aggtrades"
BINANCE_BOOKTICKER = "binance_bookticker"
BYBIT_TRADES = "bybit_trades"

# Lower rank wins. OHLCV fields: trades files > stream trades > aggregate trades > klines > OHLCV CSV > mid of a book.
OHLCV_RANK: dict[str, int] = {TRADES_CSV: 0, BYBIT_TRADES: 1, BINANCE_TRADES: 2, BINANCE_AGGTRADES: 3,
                              BINANCE_KLINES: 4, OHLCV_CSV: 5, BINANCE_BOOK: 6, BYBIT_BOOK: 7, BINANCE_BOOKTICKER: 8}
# Book fields come from book sources only; between two of them the rank (then the file name) decides.
# A bookTicker (top of book only) gives mid, micro-price and spread, no depth: a full book wins.
BOOK_RANK: dict[str, int] = {BINANCE_BOOK: 0, BYBIT_BOOK: 1, BINANCE_BOOKTICKER: 2}

OHLCV_FIELDS = ("open", "high", "low", "close", "volume")
TRADE_FIELDS = ("n_trades", "buy_volume")
MID_FIELDS = ("mid_open", "mid_high", "mid_low", "mid_close")
BOOK_FIELDS = (
    "mid_close",
    "micro_price_close",
    "spread_bps_mean",
    "bid_depth_10",
    "ask_depth_10",
    "imbalance_10",
    "n_book_updates",
    "resyncs",
)

_INSTRUMENT: dict[str, pl.DataType] = {"venue": pl.String(), "market": pl.String(), "symbol": pl.String()}
# Each field's dtype, by name: Int64 for counts, Float64 for the rest.
_TYPED = {c: pl.Int64() if c in ("n_trades", "n_book_updates", "resyncs") else pl.Float64()
          for c in (*OHLCV_FIELDS, *TRADE_FIELDS, *MID_FIELDS, *BOOK_FIELDS)}

PART_SCHEMA: dict[str, pl.DataType] = {
    **_INSTRUMENT, "ts": UTC_MINUTE, "source": pl.String(), "file": pl.String(),
    **{c: _TYPED[c] for c in (*OHLCV_FIELDS, *TRADE_FIELDS, *MID_FIELDS, *BOOK_FIELDS)}  # mid_close once,
}

BAR_SCHEMA: dict[str, pl.DataType] = {
    "ts": UTC_MINUTE, **_INSTRUMENT,
    **{c: _TYPED[c] for c in (*OHLCV_FIELDS, *TRADE_FIELDS, *BOOK_FIELDS)},
    "gap_before": pl.Boolean(), "ohlcv_source": pl.String(),
}


def empty_parts() -> pl.DataFrame:
    return pl.DataFrame(schema=PART_SCHEMA)


def conform_parts(frame: pl.DataFrame) -> pl.DataFrame:
    """Add missing part columns as nulls, cast to PART_SCHEMA and order the columns.

    Parameters
    ----------
    frame : polars.DataFrame
        A part's rows; columns not in :data:`PART_SCHEMA` are dropped.
    """
    missing = [pl.lit(None, dtype=dt).alias(c) for c, dt in PART_SCHEMA.items() if c not in frame.columns]
    if missing:
        frame = frame.with_columns(missing)
    return frame.select([pl.col(c).cast(dt) for c, dt in PART_SCHEMA.items()])
