"""The primary's bets sized by a secondary probability against the same bets unsized, with a paired bootstrap CI."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from quantnb.classifier._meta import bet_size
from quantnb.errors import ConfigError
from quantnb.evaluation import stationary_bootstrap_indices


@dataclass(frozen=True)
class SizingComparison:
    """The primary sized by :func:`bet_size` against taking every signal, with a paired bootstrap CI.

    Net returns, fractions: per trade ``mean(r - c)`` unsized and ``sum(s (r - c)) / sum(s)`` sized, per
    signal ``mean(s (r - c))``; ``diff`` is sized minus unsized per trade.
    """

    n_signals: int
    n_taken: int
    mean_size: float
    unsized_return_per_trade: float
    sized_return_per_trade: float
    sized_return_per_signal: float
    unsized_hit_rate: float
    sized_hit_rate: float
    diff: float
    diff_ci_low: float
    diff_ci_high: float
    level: float
    mean_block_len: float
    n_boot: int
    cost_bps: float
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict (NaN as None)."""
        return {k: (None if isinstance(v, float) and v != v else v) for k, v in asdict(self).items()}


def _per_trade(size: np.ndarray, net: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Sized return per unit of bet of each resample (rows of ``idx``); NaN where nothing is bet."""
    bet = size[idx].sum(axis=1)
    return np.divide((size * net)[idx].sum(axis=1), bet, out=np.full(bet.shape, np.nan), where=bet > 0)


def compare_sizing(prob_take: np.ndarray, trade_return: np.ndarray, *, cost_bps: float = 0.0,
                   step: float | None = None, mean_block_len: float = 1.0, n_boot: int = 1000,
                   level: float = 0.95, seed: int = 0, chunk: int = 100) -> SizingComparison:
    """Compare the primary's bets sized by the secondary's probability with the same bets at full size.

    Each signal ``i`` has the side's gross return ``r_i`` (``trade_return`` of
    :func:`quantnb.classifier._meta.meta_labels`) and the secondary's probability ``p_i`` that it pays.
    Unsized, every signal is a bet of size 1; sized, the size is ``bet_size(p_i, step=step,
    never_reverse=True)`` in [0, 1] (AFML ch. 10). Both pay ``cost_bps`` per unit of bet. The
    figure compared is the net return per unit of bet, so a size that merely shrinks exposure does
    not count as skill; the interval is of the difference itself, from paired stationary block
    bootstrap resamples (Politis and Romano 1994; :func:`quantnb.evaluation.stationary_bootstrap_indices`).

    Parameters
    ----------
    prob_take : numpy.ndarray, shape (n,), float
        Secondary probability of TAKE per signal, in [0, 1], time order.
    trade_return : numpy.ndarray, shape (n,), float
        The side's gross return of each signal, fraction.
    cost_bps : float
        Round-trip cost per unit of bet, bps, >= 0.
    step : float, optional
        Size discretisation step (see :func:`quantnb.classifier.bet_size`).
    mean_block_len : float
        Mean bootstrap block, signals, >= 1; give the label horizon when signals overlap.
    n_boot : int
        Paired resamples.
    level : float
        Two-sided coverage.
    seed : int
        Seed of the resamples.
    chunk : int
        Resamples drawn at once (memory ``chunk * n``).

    Raises
    ------
    ConfigError
        If the arrays differ in length, hold fewer than 2 signals or a non-finite value, or an
        argument is out of range.
    """
    r = np.asarray(trade_return, dtype=np.float64)
    p = np.asarray(prob_take, dtype=np.float64)
    if r.ndim != 1 or p.shape != r.shape or r.size < 2 or not np.isfinite(r).all():
        raise ConfigError(f"prob_take {p.shape} and trade_return {r.shape}: give two equal 1-d arrays of >= 2 "
                          "finite values (one per primary signal)")
    if not (cost_bps >= 0 and 0.0 < level < 1.0 and n_boot >= 1):
        raise ConfigError(f"cost_bps={cost_bps}, level={level}, n_boot={n_boot}: need cost_bps >= 0, "
                          "0 < level < 1 and n_boot >= 1")
    size = bet_size(p, step=step, never_reverse=True)
    net = r - cost_bps * 1e-4
    whole = np.arange(r.size)[None, :]
    unsized, sized = float(net.mean()), float(_per_trade(size, net, whole)[0])
    block = min(float(r.size), max(1.0, float(mean_block_len)))
    diffs = []
    for k in range(0, n_boot, chunk):
        idx = stationary_bootstrap_indices(r.size, min(chunk, n_boot - k), block, seed + k)
        diffs.append(_per_trade(size, net, idx) - net[idx].mean(axis=1))
    all_d = np.concatenate(diffs)
    lo, hi = np.nanquantile(all_d, [(1 - level) / 2, (1 + level) / 2]) if np.isfinite(all_d).any() else (np.nan,) * 2
    taken = size > 0
    diff = sized - unsized
    if lo > 0:
        words = "sizing by the secondary's probability improves on taking every primary signal"
    elif hi < 0:
        words = "sizing by the secondary's probability is worse than taking every primary signal"
    else:
        words = "sizing by the secondary's probability is not distinguishable from taking every primary signal"
    verdict = (f"Net return per trade sized {1e4 * sized:+.2f} bps ({int(taken.sum())} of {r.size} signals taken, "
               f"mean size {size.mean():.2f}) vs unsized {1e4 * unsized:+.2f} bps, after {cost_bps:g} bps cost: "
               f"difference {1e4 * diff:+.2f} bps ({level:.0%} CI [{1e4 * lo:+.2f}, {1e4 * hi:+.2f}]); {words}.")
    return SizingComparison(
        n_signals=int(r.size), n_taken=int(taken.sum()), mean_size=float(size.mean()),
        unsized_return_per_trade=unsized, sized_return_per_trade=sized,
        sized_return_per_signal=float((size * net).mean()), unsized_hit_rate=float((net > 0).mean()),
        sized_hit_rate=float((net[taken] > 0).mean()) if taken.any() else float("nan"), diff=float(diff),
        diff_ci_low=float(lo), diff_ci_high=float(hi), level=level, mean_block_len=block, n_boot=n_boot,
        cost_bps=float(cost_bps), verdict=verdict)


def compare_precision_to_take_all(y_true: np.ndarray, y_model: np.ndarray, *, mean_block_len: float = 1.0,
                                  n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                                  chunk: int = 100) -> dict[str, Any]:
    """Compare a secondary model's precision on TAKE with always taking the primary's side, paired bootstrap CI.

    Always taking the primary's side predicts TAKE everywhere: its precision is the share of
    TAKE labels (the primary's own hit rate) and its recall 1. The model's precision is
    ``TP / (TP + FP)`` over the windows it predicts TAKE (NaN in a resample where it predicts
    none, left out of the quantiles).

    Parameters
    ----------
    y_true, y_model : numpy.ndarray, shape (n,), int
        Meta-labels and the model's predictions, 0 SKIP / 1 TAKE, time order, n >= 2.
    mean_block_len : float
        Mean bootstrap block, rows, >= 1 (the label horizon: labels overlap).
    n_boot, level, seed, chunk
        As for :func:`compare_sizing`: paired resamples, two-sided coverage, their seed, resamples drawn at once.

    Returns
    -------
    dict of str to Any
        ``precision``, ``recall`` (the model's on TAKE), ``baseline_precision``,
        ``model_minus_baseline``, ``diff_ci_low``, ``diff_ci_high``, ``level``, ``verdict``.

    Raises
    ------
    ConfigError
        If the arrays differ in length, are shorter than 2 or hold a class other than 0 or 1.
    """
    yt, ym = np.asarray(y_true, dtype=np.int64), np.asarray(y_model, dtype=np.int64)
    if yt.ndim != 1 or ym.shape != yt.shape or yt.size < 2 or not (np.isin(yt, (0, 1)).all()
                                                                   and np.isin(ym, (0, 1)).all()):
        raise ConfigError(f"y_true {yt.shape}, y_model {ym.shape}: give two equal 1-d arrays of >= 2 meta-labels "
                          "(0 SKIP, 1 TAKE)")
    block = min(float(yt.size), max(1.0, float(mean_block_len)))

    def precision(idx: np.ndarray) -> np.ndarray:
        taken = ym[idx].sum(axis=1)
        hits = (ym[idx] & yt[idx]).sum(axis=1)
        return np.divide(hits, taken, out=np.full(taken.shape, np.nan), where=taken > 0)

    whole = np.arange(yt.size)[None, :]
    prec, base = float(precision(whole)[0]), float(yt.mean())
    recall = float((ym & yt).sum() / yt.sum()) if yt.sum() else float("nan")
    diffs = []
    for k in range(0, n_boot, chunk):
        idx = stationary_bootstrap_indices(yt.size, min(chunk, n_boot - k), block, seed + k)
        diffs.append(precision(idx) - yt[idx].mean(axis=1))
    d = np.concatenate(diffs)
    lo, hi = np.nanquantile(d, [(1 - level) / 2, (1 + level) / 2]) if np.isfinite(d).any() else (np.nan, np.nan)
    if lo > 0:
        words = "the model's TAKE calls are more precise than always taking the primary's side"
    elif hi < 0:
        words = "the model's TAKE calls are less precise than always taking the primary's side"
    else:
        words = "the model's precision is not distinguishable from always taking the primary's side"
    verdict = (f"Precision on TAKE {prec:.3f} (recall {recall:.3f}) vs always taking the primary's side "
               f"{base:.3f}: difference {prec - base:+.3f} ({level:.0%} CI [{lo:+.3f}, {hi:+.3f}]); {words}.")
    out = {"precision": prec, "recall": recall, "baseline_precision": base, "model_minus_baseline": prec - base,
           "diff_ci_low": float(lo), "diff_ci_high": float(hi), "level": level, "mean_block_len": block,
           "n_boot": n_boot, "verdict": verdict}
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in out.items()}
