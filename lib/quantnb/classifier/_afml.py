"""AFML labels and sample weights: triple barrier, CUSUM event sampling, uniqueness, return attribution.

Source: M. López de Prado, *Advances in Financial Machine Learning* (Wiley, 2018): the symmetric
CUSUM filter (section 2.5.2.1, snippet 2.4), the triple-barrier method (3.4, snippets 3.2-3.4),
concurrency and average uniqueness (4.3-4.4, snippets 4.1-4.2) and return attribution (4.6,
snippet 4.10). Every function works on 1-minute bars on the minute grid; a label never spans a
gap (a ``ts`` step above one minute or ``gap_before``).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import polars as pl

from quantnb.classifier._bars import _MINUTE_US, break_before_expr, check_bars
from quantnb.errors import ConfigError

BARRIER_STOP_LOSS, BARRIER_VERTICAL, BARRIER_PROFIT_TAKE = -1, 0, 1
_TOL = 1e-12  # same absolute tolerance as the fixed-horizon thresholds (THRESHOLD_TOL)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{name}: got {value!r}; give a whole number of minutes >= 1, e.g. 60")
    return int(value)


def _positive_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}: got {value!r}; give a finite number > 0, e.g. 1.0")
    return float(value)


def _segments(df: pl.DataFrame) -> np.ndarray:
    """Segment id of each row (a new one at every gap); int64, shape (rows,)."""
    if df.height == 0:
        return np.zeros(0, dtype=np.int64)
    return df.select(break_before_expr(df).cast(pl.Int64).cum_sum()).to_series().to_numpy()


def _prices(df: pl.DataFrame, price_col: str) -> np.ndarray:
    if price_col not in df.columns:
        raise ConfigError(f"price_col: column {price_col!r} is not in the bars (columns: {df.columns})")
    p = df.get_column(price_col).cast(pl.Float64).fill_null(float("nan")).to_numpy()
    return np.where(np.isfinite(p) & (p > 0), p, np.nan)


def _returns(p: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Log return of each bar from the previous one; NaN at a segment start or a bad price."""
    r = np.full(p.shape[0], np.nan)
    if p.shape[0] > 1:
        r[1:] = np.log(p[1:] / p[:-1])
        r[1:][seg[1:] != seg[:-1]] = np.nan
    return r


def ewm_volatility(df: pl.DataFrame, span_min: int, price_col: str = "close") -> np.ndarray:
    """Return the EWM volatility of 1-minute log returns at each bar, a fraction per minute.

    RiskMetrics' zero-mean EWM variance (J.P. Morgan, *RiskMetrics Technical Document*, 1996):
    ``v_t = (1 - a) v_{t-1} + a r_t^2``, ``a = 2 / (span_min + 1)``; a bar without a return keeps the
    previous value; NaN until ``span_min`` returns have been seen.
    """
    span = _positive_int("vol_span_min", span_min)
    p = _prices(df, price_col)
    r2 = pl.Series(_returns(p, _segments(df)) ** 2).fill_nan(None)
    var = r2.ewm_mean(alpha=2.0 / (span + 1), adjust=False, ignore_nulls=True, min_samples=1)
    var_arr = var.forward_fill().to_numpy()  # a bar without a return keeps the previous variance
    seen = np.cumsum(~np.isnan(r2.fill_null(float("nan")).to_numpy()))
    return np.where(seen >= span, np.sqrt(var_arr), np.nan)


def cusum_events(df: pl.DataFrame, threshold_frac: float, price_col: str = "close") -> np.ndarray:
    """Return a bool mask of the bars a symmetric CUSUM filter on 1-minute log returns picks (AFML snippet 2.4).

    ``s+ = max(0, s+ + r)``, ``s- = min(0, s- + r)``; a bar where ``s+ > threshold_frac`` or
    ``s- < -threshold_frac`` is an event and resets both sums, as does every gap; a missing return
    leaves them unchanged.
    """
    h = _positive_real("cusum_threshold", threshold_frac)
    seg = _segments(df)
    r = _returns(_prices(df, price_col), seg)
    out = np.zeros(r.shape[0], dtype=bool)
    s_pos = s_neg = 0.0
    prev_seg = None
    for i, (ri, si) in enumerate(zip(r.tolist(), seg.tolist(), strict=True)):
        if si != prev_seg:
            s_pos = s_neg = 0.0
            prev_seg = si
        if ri != ri:  # NaN
            continue
        s_pos, s_neg = max(0.0, s_pos + ri), min(0.0, s_neg + ri)
        if s_pos > h or s_neg < -h:
            out[i] = True
            s_pos = s_neg = 0.0
    return out


def triple_barrier_labels(df: pl.DataFrame, max_holding_min: int, profit_take_mult: float = 1.0,
                          stop_loss_mult: float = 1.0, vol_span_min: int = 60, price_col: str = "close",
                          events: np.ndarray | None = None) -> pl.DataFrame:
    """Label bars by the first of three barriers their price path touches (AFML section 3.4).

    For an event bar ``t`` with price ``p0`` and holding-period volatility ``s = ewm_volatility(t) *
    sqrt(max_holding_min)`` the barriers are ``p0 (1 + profit_take_mult s)`` (BUY, 2), ``p0 (1 -
    stop_loss_mult s)`` (SELL, 0) and ``t + max_holding_min`` minutes (NEUTRAL, 1), compared within
    1e-12. A bar whose volatility is unknown or zero, or whose path reaches a gap, a bad price or the
    end of the data first, is not labelled. Returns the event bars plus ``fwd_return``, ``label``,
    ``t1``, ``barrier`` (1 profit-taking, -1 stop-loss, 0 vertical) and ``vol_frac``.
    """
    horizon = _positive_int("max_holding_min", max_holding_min)
    pt, sl = _positive_real("profit_take_mult", profit_take_mult), _positive_real("stop_loss_mult", stop_loss_mult)
    check_bars(df)
    n = df.height
    p = _prices(df, price_col)
    vol = ewm_volatility(df, vol_span_min, price_col) * math.sqrt(horizon)
    ev = np.ones(n, dtype=bool) if events is None else np.asarray(events, dtype=bool)
    if ev.shape != (n,):
        raise ConfigError(f"events: shape {ev.shape}; give one bool per bar ({n},)")
    cand = np.flatnonzero(ev & np.isfinite(p) & np.isfinite(vol) & (vol > 0))
    end, code = _first_touch(df, p, cand, pt * vol, -sl * vol, horizon)
    idx = np.flatnonzero(end >= 0)
    e = end[idx]
    labels = np.where(code[idx] == BARRIER_PROFIT_TAKE, 2, np.where(code[idx] == BARRIER_STOP_LOSS, 0, 1))
    return df[idx].with_columns(
        fwd_return=pl.Series(p[e] / p[idx] - 1.0, dtype=pl.Float64),
        label=pl.Series(labels, dtype=pl.Int8),
        t1=df.get_column("ts").gather(e),
        barrier=pl.Series(code[idx], dtype=pl.Int8),
        vol_frac=pl.Series(vol[idx], dtype=pl.Float64),
    )


def _first_touch(df: pl.DataFrame, p: np.ndarray, cand: np.ndarray, up_frac: np.ndarray, down_frac: np.ndarray,
                horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Walk the price paths of rows ``cand`` to the first barrier; return (end row or -1, raw barrier code) per row."""
    n = df.height
    seg = _segments(df)
    end = np.full(n, -1, dtype=np.int64)
    code = np.zeros(n, dtype=np.int8)
    pad_p = np.concatenate([p, np.full(horizon, np.nan)])
    pad_seg = np.concatenate([seg, np.full(horizon, -1)])
    walk = _walk_dense if cand.shape[0] * 8 > n else _walk_sparse
    walk(cand, p, seg, pad_p, pad_seg, up_frac - _TOL, down_frac + _TOL, horizon, end, code)
    return end, code


def _walk_dense(cand: np.ndarray, p: np.ndarray, seg: np.ndarray, pad_p: np.ndarray, pad_seg: np.ndarray,
                up_at: np.ndarray, down_at: np.ndarray, horizon: int, end: np.ndarray, code: np.ndarray) -> None:
    """Walk every open path one minute at a time over whole-array slices (most bars are events)."""
    n = p.shape[0]
    open_ = np.zeros(n, dtype=bool)
    open_[cand] = True
    for k in range(1, horizon + 1):  # a path closes at a touch, a gap or a bad price
        fwd = pad_p[k:k + n] / p - 1.0
        open_ &= (pad_seg[k:k + n] == seg) & np.isfinite(fwd)
        hit = np.flatnonzero(open_ & ((fwd >= up_at) | (fwd <= down_at)))
        end[hit] = hit + k
        code[hit] = np.where(fwd[hit] > 0, BARRIER_PROFIT_TAKE, BARRIER_STOP_LOSS)
        open_[hit] = False
    last = np.flatnonzero(open_)
    end[last], code[last] = last + horizon, BARRIER_VERTICAL


def _walk_sparse(cand: np.ndarray, p: np.ndarray, seg: np.ndarray, pad_p: np.ndarray, pad_seg: np.ndarray,
                 up_at: np.ndarray, down_at: np.ndarray, horizon: int, end: np.ndarray, code: np.ndarray) -> None:
    """Walk the open paths of few events (e.g. CUSUM's) one minute at a time, dropping closed ones."""
    rows, p0, sg, up, down = cand, p[cand], seg[cand], up_at[cand], down_at[cand]
    for k in range(1, horizon + 1):
        fwd = pad_p[rows + k] / p0 - 1.0
        alive = (pad_seg[rows + k] == sg) & np.isfinite(fwd)
        hit = alive & ((fwd >= up) | (fwd <= down))
        end[rows[hit]] = rows[hit] + k
        code[rows[hit]] = np.where(fwd[hit] > 0, BARRIER_PROFIT_TAKE, BARRIER_STOP_LOSS)
        keep = alive & ~hit
        rows, p0, sg, up, down = rows[keep], p0[keep], sg[keep], up[keep], down[keep]
    end[rows], code[rows] = rows + horizon, BARRIER_VERTICAL


def sample_weights(labelled: pl.DataFrame, bars: pl.DataFrame, price_col: str = "close") -> pl.DataFrame:
    """Add each label's average uniqueness and return-attribution weight (AFML sections 4.3-4.4, 4.6).

    A label ``(t0, t1]`` spans the returns of its bars; ``c_t`` counts the labels spanning bar ``t``.
    ``uniqueness`` is the mean of ``1 / c_t`` over the span, in (0, 1]; ``return_weight`` is
    ``|sum r_t / c_t|`` over it (AFML snippet 4.10, unscaled: the trainer scales a split to mean 1).
    """
    if "t1" not in labelled.columns:
        raise ConfigError(f"labelled: no 't1' column (columns: {labelled.columns}); label with label_events first")
    grid = bars.get_column("ts").dt.epoch("us").to_numpy()
    t0 = labelled.get_column("ts").dt.epoch("us").to_numpy()
    t1 = labelled.get_column("t1").dt.epoch("us").to_numpy()
    s, e = np.searchsorted(grid, t0), np.searchsorted(grid, t1)
    n = grid.shape[0]
    inside = (s < n) & (e < n)
    if not (inside.all() and (grid[s[inside]] == t0[inside]).all() and (grid[e[inside]] == t1[inside]).all()
            and (e > s).all()):
        raise ConfigError("labelled: a label's ts or t1 is not a bar of the given bars (or t1 <= ts); "
                          "pass the bars the labels were computed from")
    conc = np.cumsum(np.bincount(s + 1, minlength=n + 1) - np.bincount(e + 1, minlength=n + 1))[:n]
    inv = np.where(conc > 0, 1.0 / np.maximum(conc, 1), 0.0)
    r = np.nan_to_num(_returns(_prices(bars, price_col), _segments(bars)), nan=0.0)
    inv_cum = np.concatenate([[0.0], np.cumsum(inv)])
    att_cum = np.concatenate([[0.0], np.cumsum(r * inv)])
    uniq = np.clip((inv_cum[e + 1] - inv_cum[s + 1]) / (e - s), 1e-300, 1.0)  # prefix-sum rounding stays in (0, 1]
    ret_w = np.abs(att_cum[e + 1] - att_cum[s + 1])
    return labelled.with_columns(uniqueness=pl.Series(uniq, dtype=pl.Float64),
                                 return_weight=pl.Series(ret_w, dtype=pl.Float64))


def fixed_horizon_t1(labelled: pl.DataFrame, lookahead_min: int) -> pl.DataFrame:
    """Add ``t1 = ts + lookahead_min`` (the end of each fixed-horizon label) as column ``t1``."""
    minutes = _positive_int("lookahead_min", lookahead_min)
    return labelled.with_columns(t1=pl.col("ts") + pl.duration(microseconds=minutes * _MINUTE_US))


def sequential_bootstrap(labelled: pl.DataFrame, n_draws: int | None = None, seed: int = 0) -> np.ndarray:
    """Draw labels with replacement, each with probability proportional to its uniqueness given the draws so far.

    AFML section 4.5 (snippet 4.5): at each draw, label ``i``'s average uniqueness is the mean of
    ``1 / (c_t + 1)`` over its span ``(ts, t1]``, with ``c_t`` the number of labels already drawn
    that span minute ``t``; labels overlapping many drawn ones become unlikely, so the sample is
    closer to independent than a standard bootstrap. Draw ``k`` takes ``u`` = that uniqueness and
    picks the first ``i`` with ``cumsum(u)[i] > rng.random() * sum(u)``.

    Parameters
    ----------
    labelled : polars.DataFrame
        Labels with ``ts`` and ``t1`` (Datetime on the minute grid, ``t1 > ts``).
    n_draws : int, optional
        Number of draws, >= 1; default the number of labels.
    seed : int
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    numpy.ndarray, shape (n_draws,), int64
        Row indices of ``labelled``, in draw order (a row may repeat).

    Raises
    ------
    ConfigError
        If ``t1`` is missing or not after ``ts``, or ``n_draws`` is not a positive integer.
    """
    if "t1" not in labelled.columns:
        raise ConfigError(f"labelled: no 't1' column (columns: {labelled.columns}); label with label_events first")
    n = labelled.height
    draws = n if n_draws is None else _positive_int("n_draws", n_draws)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    s = labelled.get_column("ts").dt.epoch("us").to_numpy() // _MINUTE_US
    e = labelled.get_column("t1").dt.epoch("us").to_numpy() // _MINUTE_US
    if (e <= s).any():
        raise ConfigError("labelled: a label's t1 is not after its ts; relabel the bars")
    base = int(s.min())
    s, e = s - base, e - base
    order = np.argsort(s, kind="stable")  # the labels overlapping a span are found by start minute
    s_sorted, max_span = s[order], int((e - s).max())
    conc = np.zeros(int(e.max()) + 2, dtype=np.int64)
    u = np.ones(n)
    rng = np.random.default_rng(seed)
    out = np.empty(draws, dtype=np.int64)
    for k in range(draws):
        cum = np.cumsum(u)
        j = min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), n - 1)
        out[k] = j
        conc[s[j] + 1:e[j] + 1] += 1
        near = order[np.searchsorted(s_sorted, s[j] - max_span):np.searchsorted(s_sorted, e[j])]
        near = near[e[near] > s[j]]  # spans (s_i, e_i] that overlap (s_j, e_j]
        lo, hi = int(s[near].min()) + 1, int(e[near].max())
        inv = np.concatenate([[0.0], np.cumsum(1.0 / (conc[lo:hi + 1] + 1))])
        u[near] = (inv[e[near] - lo + 1] - inv[s[near] + 1 - lo]) / (e[near] - s[near])
    return out
