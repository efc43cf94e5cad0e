"""Market features for the agent: a batch version for research and an incremental one for live.

Both compute the same numbers with the same formulas (the recursive indicators share their
update arithmetic; windowed statistics use two-pass means over the same window), and a test
checks them row for row on the bundled month.

Features (all causal: row ``t`` uses bars up to and including bar ``t``'s close):

============== ===============================================================================
ret_1/5/15     log return of the close over 1, 5, 15 bars
sma_ratio_20   ``close / SMA_20(close) - 1``; sma_ratio_60 likewise
rsi_14         Wilder's RSI, 0..100 (Wilder, *New Concepts in Technical Trading Systems*,
               1978): smoothing ``avg = (avg * 13 + x) / 14`` seeded with the first change,
               as in the ``ta`` Python library (the seed weighs less than 1e-16 after warm-up)
macd_line      ``(EMA_12 - EMA_26) / close`` (Appel's MACD, EMAs with ``alpha = 2 / (n + 1)``
               seeded with the first close)
macd_signal    ``EMA_9(EMA_12 - EMA_26) / close``
macd_hist      ``macd_line - macd_signal``
bb_pct_b_20    Bollinger %B, ``(close - lower) / (upper - lower)`` with bands ``SMA_20 +- 2
               sigma_20`` (population sigma; Bollinger, *Bollinger on Bollinger Bands*, 2001);
               0.5 when sigma is 0
============== ===============================================================================

Order-book features, only when the bars carry the source columns (nulls forward-filled):
``spread_bps_mean`` and ``imbalance_10`` as given, ``micro_dev_bps = (micro_price_close /
mid_close - 1) * 1e4`` and ``log_depth_10 = ln(bid_depth_10 + ask_depth_10)``.

Rows before ``warmup_bars`` bars have been seen are null in both versions, so unconverged
EMAs never reach the agent, and a live session started from a different first bar agrees
with research once warmed up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
from loguru import logger
from numpy.lib.stride_tricks import sliding_window_view

from quantnb.errors import ConfigError, DataError

RETURN_LAGS = (1, 5, 15)
SMA_WINDOWS = (20, 60)
RSI_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BB_WINDOW, BB_K = 20, 2.0
DEFAULT_WARMUP_BARS = 500
_LOOKBACK = max(max(RETURN_LAGS) + 1, max(SMA_WINDOWS), BB_WINDOW)

MARKET_FEATURES: tuple[str, ...] = (
    *(f"ret_{k}" for k in RETURN_LAGS),
    *(f"sma_ratio_{w}" for w in SMA_WINDOWS),
    f"rsi_{RSI_PERIOD}",
    "macd_line",
    "macd_signal",
    "macd_hist",
    f"bb_pct_b_{BB_WINDOW}",
)
BOOK_FEATURE_SOURCES: dict[str, tuple[str, ...]] = {
    "spread_bps_mean": ("spread_bps_mean",),
    "imbalance_10": ("imbalance_10",),
    "micro_dev_bps": ("micro_price_close", "mid_close"),
    "log_depth_10": ("bid_depth_10", "ask_depth_10"),
}
_BOOK_COLUMNS = tuple(dict.fromkeys(c for cols in BOOK_FEATURE_SOURCES.values() for c in cols))


def available_feature_names(bars: pl.DataFrame) -> list[str]:
    """Return the features computable from ``bars``, in canonical order.

    An order-book feature is included when its source columns exist and, after forward
    filling, hold no null (ETL bars from an OHLCV file carry the book columns, all null).

    Parameters
    ----------
    bars : pl.DataFrame
        A bars frame (see :func:`compute_features`).

    Returns
    -------
    list of str
        :data:`MARKET_FEATURES`, then the usable order-book features.
    """
    out = list(MARKET_FEATURES)
    for feat, src in BOOK_FEATURE_SOURCES.items():
        present = all(c in bars.columns for c in src)
        if present and all(bars[c].cast(pl.Float64).fill_nan(None).forward_fill().null_count() == 0 for c in src):
            out.append(feat)
        elif present:
            logger.info("rl/features {} left out: {} has missing values (no order book for some bars)", feat, src)
    return out


def _check_names(feature_names: Sequence[str] | None, bars: pl.DataFrame | None) -> list[str]:
    if feature_names is None:
        return available_feature_names(bars) if bars is not None else list(MARKET_FEATURES)
    known = set(MARKET_FEATURES) | set(BOOK_FEATURE_SOURCES)
    unknown = [f for f in feature_names if f not in known]
    if unknown:
        raise ConfigError(f"unknown features {unknown}; known: {sorted(known)}")
    return list(feature_names)


def _check_warmup(warmup_bars: int) -> int:
    if int(warmup_bars) < _LOOKBACK:
        raise ConfigError(f"warmup_bars={warmup_bars!r}: must be >= {_LOOKBACK}, the longest indicator look-back")
    return int(warmup_bars)


class _Recursions:
    """EMA and Wilder state; the one place their update arithmetic is written."""

    __slots__ = ("n", "ema_fast", "ema_slow", "signal", "avg_gain", "avg_loss", "prev")

    def __init__(self) -> None:
        self.n = 0
        self.ema_fast = self.ema_slow = self.signal = self.avg_gain = self.avg_loss = self.prev = 0.0

    def update(self, close: float) -> tuple[float, float, float]:
        """Advance one bar; return (macd, signal, rsi)."""
        a_f, a_s, a_g = 2.0 / (MACD_FAST + 1), 2.0 / (MACD_SLOW + 1), 2.0 / (MACD_SIGNAL + 1)
        if self.n == 0:
            self.ema_fast = self.ema_slow = close
            self.signal = 0.0
        else:
            self.ema_fast = self.ema_fast + a_f * (close - self.ema_fast)
            self.ema_slow = self.ema_slow + a_s * (close - self.ema_slow)
            macd = self.ema_fast - self.ema_slow
            self.signal = self.signal + a_g * (macd - self.signal)
            d = close - self.prev
            gain, loss = (d, 0.0) if d > 0 else (0.0, -d)
            if self.n == 1:
                self.avg_gain, self.avg_loss = gain, loss
            else:
                self.avg_gain = (self.avg_gain * (RSI_PERIOD - 1) + gain) / RSI_PERIOD
                self.avg_loss = (self.avg_loss * (RSI_PERIOD - 1) + loss) / RSI_PERIOD
        self.prev = close
        self.n += 1
        if self.avg_loss > 0:
            rsi = 100.0 - 100.0 / (1.0 + self.avg_gain / self.avg_loss)
        else:
            rsi = 100.0 if self.avg_gain > 0 else 50.0
        return self.ema_fast - self.ema_slow, self.signal, rsi


def _pct_b(close: np.ndarray | float, mean: np.ndarray | float, sd: np.ndarray | float) -> Any:
    width = 2.0 * BB_K * sd
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(width > 0, (close - (mean - BB_K * sd)) / width, 0.5)


def _validate_bars(bars: pl.DataFrame, names: list[str]) -> None:
    need = ["ts", "close", *(c for f in names for c in BOOK_FEATURE_SOURCES.get(f, ()))]
    missing = [c for c in dict.fromkeys(need) if c not in bars.columns]
    if missing:
        raise DataError(f"bars lack columns {missing}; pass ETL bars (ts, open, high, low, close, volume[, book])")
    close = bars["close"]
    bad = close.is_null() | ~close.cast(pl.Float64).is_finite() | (close <= 0)
    if bad.any():
        i = int(bad.arg_max())
        raise DataError(f"bars row {i} (ts={bars['ts'][i]}): close={close[i]!r} is not a positive price; fix the ETL")
    ts = bars["ts"]
    if ts.null_count():
        raise DataError(f"bars row {int(ts.is_null().arg_max())}: ts is null; fix the ETL output")
    steps = np.diff(ts.cast(pl.Int64).to_numpy())
    if (steps <= 0).any():
        i = int(np.argmax(steps <= 0)) + 1
        raise DataError(f"bars row {i} (ts={ts[i]}): timestamps must increase strictly; sort and dedupe the bars")


def compute_features(
    bars: pl.DataFrame, feature_names: Sequence[str] | None = None, *, warmup_bars: int = DEFAULT_WARMUP_BARS
) -> pl.DataFrame:
    """Compute the agent's features for every bar (batch).

    Parameters
    ----------
    bars : pl.DataFrame
        Columns ``ts`` (Datetime, strictly increasing), ``close`` (Float64, USD, > 0) and,
        for order-book features, their source columns; one row per closed bar.
    feature_names : sequence of str, optional
        Features to return, in order; default :func:`available_feature_names` of the bars.
    warmup_bars : int, default 500
        Rows ``0 .. warmup_bars - 2`` are null (indicator warm-up).

    Returns
    -------
    pl.DataFrame
        ``ts`` then one Float64 column per feature, ``bars.height`` rows; null during warm-up.

    Raises
    ------
    DataError
        If a column is missing, a close is not a positive number, or ``ts`` does not increase.
    ConfigError
        If a feature name is unknown or ``warmup_bars`` is shorter than the look-back.
    """
    names = _check_names(feature_names, bars)
    warmup = _check_warmup(warmup_bars)
    _validate_bars(bars, names)
    close = bars["close"].cast(pl.Float64).to_numpy()
    n = close.shape[0]
    cols: dict[str, np.ndarray] = {}
    for k in RETURN_LAGS:
        cols[f"ret_{k}"] = np.full(n, np.nan)
        if n > k:
            cols[f"ret_{k}"][k:] = np.log(close[k:] / close[:-k])
    for w in SMA_WINDOWS:
        sma = np.full(n, np.nan)
        if n >= w:
            sma[w - 1 :] = np.add.reduce(sliding_window_view(close, w), axis=1) / w
        cols[f"sma_ratio_{w}"] = close / sma - 1.0
    pct_b = np.full(n, np.nan)
    if n >= BB_WINDOW:
        win = sliding_window_view(close, BB_WINDOW)
        mean = np.add.reduce(win, axis=1) / BB_WINDOW
        sd = np.sqrt(np.add.reduce((win - mean[:, None]) ** 2, axis=1) / BB_WINDOW)
        pct_b[BB_WINDOW - 1 :] = _pct_b(close[BB_WINDOW - 1 :], mean, sd)
    cols[f"bb_pct_b_{BB_WINDOW}"] = pct_b
    rec = _Recursions()
    macd_rsi = np.array([rec.update(c) for c in close.tolist()], dtype=np.float64).reshape(n, 3)
    cols["macd_line"] = macd_rsi[:, 0] / close
    cols["macd_signal"] = macd_rsi[:, 1] / close
    cols["macd_hist"] = cols["macd_line"] - cols["macd_signal"]
    cols[f"rsi_{RSI_PERIOD}"] = macd_rsi[:, 2]
    cols.update(_book_batch(bars, names))
    out = pl.DataFrame({"ts": bars["ts"]})
    mask = np.arange(n) < warmup - 1
    for name in names:
        arr = np.where(mask, np.nan, cols[name])
        out = out.with_columns(pl.Series(name, arr, dtype=pl.Float64).fill_nan(None))
    return out


def _book_batch(bars: pl.DataFrame, names: list[str]) -> dict[str, np.ndarray]:
    wanted = [f for f in names if f in BOOK_FEATURE_SOURCES]
    if not wanted:
        return {}
    src_cols = dict.fromkeys(c for f in wanted for c in BOOK_FEATURE_SOURCES[f])
    src = {c: bars[c].cast(pl.Float64).fill_nan(None).forward_fill().fill_null(np.nan).to_numpy() for c in src_cols}
    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for f in wanted:
            out[f] = _book_formula(f, src)
    return out


def _book_formula(name: str, src: Mapping[str, Any]) -> Any:
    if name == "micro_dev_bps":
        return (src["micro_price_close"] / src["mid_close"] - 1.0) * 1e4
    if name == "log_depth_10":
        return np.log(src["bid_depth_10"] + src["ask_depth_10"])
    return src[name] * 1.0
