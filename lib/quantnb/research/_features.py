from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from quantnb.errors import ConfigError
from quantnb.research._bars import break_before_expr, check_bars

_PRICES = ("open", "high", "low", "close")


def _prev(col: str) -> pl.Expr:
    """Return the previous bar's value, null where the bar does not directly follow it."""
    return pl.when(pl.col("_break_before")).then(None).otherwise(pl.col(col).shift(1))


def _available(bars: pl.DataFrame | Sequence[str]) -> list[str]:
    """Return the columns holding data: present, and for a non-empty frame not entirely null."""
    if not isinstance(bars, pl.DataFrame):
        return list(bars)
    if bars.height == 0:
        return bars.columns
    nulls = bars.null_count().row(0)
    return [col for col, n in zip(bars.columns, nulls, strict=True) if n < bars.height]


def _feature_exprs(columns: list[str]) -> dict[str, pl.Expr]:
    c = pl.col
    exprs: dict[str, pl.Expr] = {
        "log_ret_1m": (c("close") / _prev("close")).log(),
        "log_body": (c("close") / c("open")).log(),
        "log_hl_range": (c("high") / c("low")).log(),
        "upper_wick": (c("high") / pl.max_horizontal("open", "close")).log(),
        "lower_wick": (pl.min_horizontal("open", "close") / c("low")).log(),
    }
    have = set(columns)
    if "volume" in have:
        exprs["log_volume"] = c("volume").log1p()
        exprs["log_volume_chg"] = c("volume").log1p() - _prev("volume").log1p()
    if "mid_close" in have:
        exprs["log_ret_mid_1m"] = (c("mid_close") / _prev("mid_close")).log()
        if "micro_price_close" in have:
            exprs["micro_dev_bps"] = (c("micro_price_close") / c("mid_close") - 1.0) * 1e4
    if "spread_bps_mean" in have:
        exprs["spread_bps"] = c("spread_bps_mean")
    if "imbalance_10" in have:
        exprs["imbalance_10"] = c("imbalance_10")
    if {"bid_depth_10", "ask_depth_10"} <= have:
        exprs["log_depth_10"] = (c("bid_depth_10") + c("ask_depth_10")).log1p()
        exprs["log_depth_ratio_10"] = (c("bid_depth_10") / c("ask_depth_10")).log()
    if "n_trades" in have:
        exprs["log_n_trades"] = c("n_trades").cast(pl.Float64).log1p()
    if {"buy_volume", "volume"} <= have:
        exprs["buy_volume_frac"] = pl.when(c("volume") > 0).then(c("buy_volume") / c("volume")).otherwise(0.5)
    if "n_book_updates" in have:
        exprs["log_n_book_updates"] = c("n_book_updates").cast(pl.Float64).log1p()
    return exprs


def feature_columns(bars: pl.DataFrame | Sequence[str]) -> list[str]:
    """Return the names of the model features that these bars provide.

    A feature is provided when its source columns hold data: for a frame, a column that is
    entirely null (the ETL writes every bar column, null where the source lacks it, e.g. book
    columns for an OHLCV file or volume for a book-only file) counts as absent.

    Price features are log-returns and log-ratios, volume and counts are ``log1p``-compressed,
    book features are in bps, ratios or logs: all scale-invariant, so a model trained at one
    price level applies at another.

    ================== ==========================================================
    feature            definition (``prev`` = previous minute, same segment)
    ================== ==========================================================
    log_ret_1m         ln(close / prev close)
    log_body           ln(close / open)
    log_hl_range       ln(high / low)
    upper_wick         ln(high / max(open, close))
    lower_wick         ln(min(open, close) / low)
    log_volume         ln(1 + volume)                            (volume)
    log_volume_chg     ln(1 + volume) - ln(1 + prev volume)      (volume)
    log_ret_mid_1m     ln(mid_close / prev mid_close)            (book)
    micro_dev_bps      (micro_price_close / mid_close - 1) * 1e4 (book)
    spread_bps         spread_bps_mean                           (book)
    imbalance_10       imbalance_10                              (book)
    log_depth_10       ln(1 + bid_depth_10 + ask_depth_10)       (book)
    log_depth_ratio_10 ln(bid_depth_10 / ask_depth_10)           (book)
    log_n_trades       ln(1 + n_trades)
    buy_volume_frac    buy_volume / volume (0.5 when volume is 0)
    log_n_book_updates ln(1 + n_book_updates)                    (book)
    ================== ==========================================================

    Parameters
    ----------
    bars : polars.DataFrame or sequence of str
        The bars, or just their column names (then every listed column counts as holding data).
        ``open, high, low, close`` are required.

    Returns
    -------
    list of str
        Feature names, in a fixed order.

    Raises
    ------
    ConfigError
        If a price column (open, high, low, close) is missing or entirely null.
    """
    columns = _available(bars)
    missing = [c for c in _PRICES if c not in columns]
    if missing:
        raise ConfigError(f"bars: columns {missing} are missing or empty (have {columns}); features need OHLC bars")
    return list(_feature_exprs(columns))


def build_features(df: pl.DataFrame, features: list[str] | None = None) -> pl.DataFrame:
    """Add the model feature columns (Float64) to 1-minute bars.

    Features that need the previous minute (returns, volume change) are null on the first bar
    of the data and on the first bar after a gap (a missing minute or ``gap_before``), so no
    feature ever bridges a gap; non-finite values (a zero price, an empty book side) are left
    as they come and mark the row unusable for :class:`WindowDataset`.

    Parameters
    ----------
    df : polars.DataFrame
        Bars with ``ts`` and OHLCV columns, optionally book columns (see :func:`feature_columns`).
    features : list of str, optional
        Features to build (e.g. from a saved model bundle); default ``feature_columns(df)``.

    Returns
    -------
    polars.DataFrame
        ``df`` with one Float64 column per feature added (existing columns of the same name replaced).

    Raises
    ------
    ConfigError
        If a price column is missing or a requested feature cannot be built from these columns.
    DataError
        If ``ts`` is missing, not a Datetime, off the minute grid, unsorted or duplicated.
    """
    available = feature_columns(df)
    check_bars(df)
    exprs = _feature_exprs(df.columns)
    wanted = available if features is None else list(features)
    unknown = [f for f in wanted if f not in available]
    if unknown:
        raise ConfigError(
            f"features: {unknown} cannot be built from these bars (columns holding data: {_available(df)}); "
            "the model was trained on bars with more columns (e.g. book features) — use matching bars"
        )
    out = (df.lazy().with_columns(break_before_expr(df))
           .with_columns([exprs[f].cast(pl.Float64).alias(f) for f in wanted])
           .drop("_break_before").collect())
    return out
