"""Meta-labelling and bet sizing: a primary side, meta-labels on its bets, and sizes from a secondary probability.

Source: M. López de Prado, *Advances in Financial Machine Learning* (Wiley, 2018): meta-labelling
(section 3.6, snippets 3.6-3.7: the triple barrier in the direction of a known side, label 1 when
the side's bet pays) and bet sizing from predicted probabilities (chapter 10, snippets 10.1 and
10.3: ``z = (p - 1/2) / sqrt(p (1 - p))``, ``m = 2 Phi(z) - 1``, optional discretisation). The
primary side is a rule known at decision time (the close of the bar) or a column of the bars.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from quantnb.classifier._afml import (
    BARRIER_PROFIT_TAKE,
    _first_touch,
    _positive_int,
    _positive_real,
    _prices,
    _segments,
    ewm_volatility,
)
from quantnb.classifier._bars import check_bars
from quantnb.errors import ConfigError, DataError

SKIP, TAKE = 0, 1
META_LABEL_NAMES: tuple[str, str] = ("SKIP", "TAKE")
_erf = np.vectorize(math.erf, otypes=[np.float64])


def momentum_side(df: pl.DataFrame, lookback_min: int, price_col: str = "close") -> np.ndarray:
    """Return each bar's time-series momentum side, int8: ``sign(p_t / p_{t - lookback_min} - 1)``.

    0 (no bet) where the look-back reaches a gap, the start of the data or a bad price. Moskowitz, Ooi
    and Pedersen, "Time series momentum", Journal of Financial Economics 104(2), 2012.
    """
    n_back = _positive_int("momentum_min", lookback_min)
    p = _prices(df, price_col)
    seg = _segments(df)
    side = np.zeros(p.shape[0], dtype=np.int8)
    if p.shape[0] > n_back:
        same = seg[n_back:] == seg[:-n_back]  # a segment is contiguous minutes: n rows back is n minutes back
        with np.errstate(invalid="ignore"):
            ret = p[n_back:] / p[:-n_back] - 1.0
        ok = same & np.isfinite(ret)
        side[n_back:] = np.where(ok, np.sign(np.where(ok, ret, 0.0)), 0).astype(np.int8)
    return side


def side_from_column(df: pl.DataFrame, side_col: str) -> np.ndarray:
    """Return a side column supplied with the bars as int8, null read as 0 (no bet).

    Parameters
    ----------
    df : polars.DataFrame
        Bars with ``side_col``.
    side_col : str
        Column of sides: -1, 0 or +1, known at each bar's close.

    Returns
    -------
    numpy.ndarray, shape (rows,), int8

    Raises
    ------
    ConfigError
        If the column is absent.
    DataError
        If a value is not -1, 0, +1 or null (the message names the bar and the value).
    """
    if side_col not in df.columns:
        raise ConfigError(f"side_col: column {side_col!r} is not in the bars (columns: {df.columns}); "
                          "add the primary's side (-1, 0, +1) to the bars or use side_rule='momentum'")
    col = df.get_column(side_col)
    num = col.cast(pl.Float64, strict=False)
    unreadable = (num.is_null() & col.is_not_null()).to_numpy()  # e.g. "long": not a number, not a missing side
    raw = num.fill_null(0.0).fill_nan(None).to_numpy()
    bad = np.flatnonzero(~np.isin(raw, (-1.0, 0.0, 1.0)) | unreadable)
    if bad.size:
        i = int(bad[0])
        raise DataError(f"bar {df['ts'][i]} field {side_col}: side {df[side_col][i]!r}; a side must be -1 (short), "
                        f"0 (no bet) or +1 (long): fix the column ({bad.size} bad row(s))",
                        bar=str(df["ts"][i]), field=side_col)
    return raw.astype(np.int8)


def meta_labels(df: pl.DataFrame, side: np.ndarray, max_holding_min: int, profit_take_mult: float = 1.0,
                stop_loss_mult: float = 1.0, vol_span_min: int = 60, cost_bps: float = 0.0,
                price_col: str = "close", events: np.ndarray | None = None) -> pl.DataFrame:
    """Meta-label the primary's bets: TAKE (1) when its profit-taking barrier is hit first and pays the cost.

    AFML section 3.6: the barriers of :func:`triple_barrier_labels` set in the side's direction; TAKE
    when the side's return at the profit-taking touch exceeds ``cost_bps`` (round trip), else SKIP (0).
    A bar without a side, a volatility or a complete path gets no label. Adds ``side``,
    ``fwd_return``, ``trade_return`` (``side * fwd_return``), ``label``, ``t1``, ``barrier`` (in the
    side's terms) and ``vol_frac``.
    """
    horizon = _positive_int("max_holding_min", max_holding_min)
    pt, sl = _positive_real("profit_take_mult", profit_take_mult), _positive_real("stop_loss_mult", stop_loss_mult)
    if isinstance(cost_bps, bool) or not isinstance(cost_bps, int | float) or not math.isfinite(cost_bps) \
            or cost_bps < 0:
        raise ConfigError(f"meta_cost_bps: got {cost_bps!r}; give the round-trip cost in bps >= 0, e.g. 11.0")
    check_bars(df)
    n = df.height
    sd = np.asarray(side)
    if sd.shape != (n,) or not np.isin(sd, (-1, 0, 1)).all():
        raise ConfigError(f"side: shape {sd.shape}; give one side in (-1, 0, +1) per bar ({n},)")
    sd = sd.astype(np.int8)
    ev = np.ones(n, dtype=bool) if events is None else np.asarray(events, dtype=bool)
    if ev.shape != (n,):
        raise ConfigError(f"events: shape {ev.shape}; give one bool per bar ({n},)")
    p = _prices(df, price_col)
    vol = ewm_volatility(df, vol_span_min, price_col) * math.sqrt(horizon)
    cand = np.flatnonzero(ev & (sd != 0) & np.isfinite(p) & np.isfinite(vol) & (vol > 0))
    long_ = sd > 0  # a long takes profit above the price, a short below it
    end, code = _first_touch(df, p, cand, np.where(long_, pt, sl) * vol, -np.where(long_, sl, pt) * vol, horizon)
    idx = np.flatnonzero(end >= 0)
    e, s = end[idx], sd[idx]
    fwd = p[e] / p[idx] - 1.0
    trade = s * fwd
    barrier = (code[idx] * s).astype(np.int8)  # raw up/down -> the side's profit-taking/stop-loss
    label = (barrier == BARRIER_PROFIT_TAKE) & (trade > cost_bps * 1e-4)
    return df[idx].with_columns(
        side=pl.Series(s, dtype=pl.Int8),
        fwd_return=pl.Series(fwd, dtype=pl.Float64),
        trade_return=pl.Series(trade, dtype=pl.Float64),
        label=pl.Series(np.where(label, TAKE, SKIP), dtype=pl.Int8),
        t1=df.get_column("ts").gather(e),
        barrier=pl.Series(barrier, dtype=pl.Int8),
        vol_frac=pl.Series(vol[idx], dtype=pl.Float64),
    )


def bet_size(prob: np.ndarray | float, side: np.ndarray | float = 1.0, *, step: float | None = None,
             never_reverse: bool = False) -> np.ndarray:
    """Return the bet size of a probability: ``side * (2 Phi(z) - 1)``, ``z = (p - 1/2) / sqrt(p (1 - p))``.

    AFML chapter 10 (snippet 10.1 for two outcomes): the size is 0 at ``p = 1/2``, rises
    monotonically to 1 as ``p`` -> 1 and is odd about 1/2 (``size(1 - p) = -size(p)``). With
    ``step`` the size is rounded to a multiple of ``step`` (snippet 10.3, which limits churn from
    small changes of ``p``). For meta-labelling, ``p`` is the secondary model's probability that
    the primary's bet pays (TAKE), ``side`` the primary's side, and ``never_reverse=True`` sizes a
    ``p < 1/2`` at 0 (the secondary decides whether and how much, never the direction).

    Parameters
    ----------
    prob : numpy.ndarray, shape (n,), float, or float
        Probabilities in [0, 1].
    side : numpy.ndarray, shape (n,), or float
        Side of each bet (+1, -1, 0); default +1 (the size of a long).
    step : float, optional
        Discretisation step in (0, 1], e.g. 0.1; default continuous.
    never_reverse : bool
        Clip sizes below 0 (before the side is applied) to 0.

    Returns
    -------
    numpy.ndarray, shape (n,), float64
        Sizes in [-1, 1], as fractions of the full bet.

    Raises
    ------
    ConfigError
        If a probability is outside [0, 1] or not finite, or ``step`` is out of range.
    """
    p = np.atleast_1d(np.asarray(prob, dtype=np.float64))
    if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
        bad = p[~(np.isfinite(p) & (p >= 0) & (p <= 1))][0]
        raise ConfigError(f"prob: {float(bad)!r} is not a probability; give values in [0, 1]")
    if step is not None and not (isinstance(step, int | float) and 0 < step <= 1):
        raise ConfigError(f"step: got {step!r}; give a discretisation step in (0, 1], e.g. 0.1, or None")
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (p - 0.5) / np.sqrt(p * (1.0 - p))  # +-inf at p = 1 or 0, where the size is +-1
    m = np.where(np.isfinite(z), _erf(np.where(np.isfinite(z), z, 0.0) / math.sqrt(2.0)), np.sign(p - 0.5))
    if never_reverse:
        m = np.maximum(m, 0.0)
    if step is not None:
        m = np.clip(np.round(m / step) * step, -1.0, 1.0)
    return m * np.asarray(side, dtype=np.float64)
