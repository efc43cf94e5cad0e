"""The bundled real month of BTC-PERP 1-minute bars, with gaps and book columns for the feature tests."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import polars as pl

from tests.agent._helpers import month_bars

# rows removed to make gaps: one missing minute, three, and a long outage (600 minutes)
GAP_ROWS = [(5_000, 5_001), (12_000, 12_003), (30_000, 30_600)]


@lru_cache(maxsize=1)
def month_with_book() -> pl.DataFrame:
    """The real month plus order-book and trade-count columns derived deterministically from it.

    The month carries OHLCV only; the book columns are a function of the real prices (the
    mid is the close, spread and depth follow the bar's range and volume) with every 7th
    book value null, so forward filling is exercised. Values are plausible, not recorded.
    """
    bars = month_bars()
    n = bars.height
    rng = np.random.default_rng(42)
    close = bars["close"].to_numpy()
    rel_range = (bars["high"].to_numpy() - bars["low"].to_numpy()) / close
    vol = bars["volume"].to_numpy()
    holes = (np.arange(n) % 7) == 3
    spread = np.where(holes, np.nan, 1e4 * rel_range / 20 + 0.1)
    bid = np.where(holes, np.nan, 1.0 + vol / 1e5 * rng.uniform(0.5, 1.5, n))
    ask = np.where(holes, np.nan, 1.0 + vol / 1e5 * rng.uniform(0.5, 1.5, n))
    return bars.with_columns(
        pl.Series("n_trades", (vol / 5e3).astype(np.int64)),
        pl.Series("buy_volume", vol * rng.uniform(0.2, 0.8, n)),
        pl.Series("mid_close", close),
        pl.Series("micro_price_close", close * (1 + rng.normal(0, 1e-5, n))),
        pl.Series("spread_bps_mean", spread).fill_nan(None),
        pl.Series("bid_depth_10", bid).fill_nan(None),
        pl.Series("ask_depth_10", ask).fill_nan(None),
        pl.Series("imbalance_10", (bid - ask) / (bid + ask)).fill_nan(None),
        pl.Series("n_book_updates", (vol / 1e3).astype(np.int64)),
    )


def with_gaps(bars: pl.DataFrame) -> pl.DataFrame:
    """Drop the rows of :data:`GAP_ROWS` (row numbers of ``bars``)."""
    keep = np.ones(bars.height, dtype=bool)
    for a, b in GAP_ROWS:
        keep[a:b] = False
    return bars.filter(pl.Series(keep))
