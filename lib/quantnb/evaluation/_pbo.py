"""Probability of backtest overfitting by combinatorially symmetric cross-validation (CSCV)."""

from __future__ import annotations

import itertools
import math

import numpy as np

from quantnb.errors import ConfigError


def pbo_cscv(scores: np.ndarray, *, max_combinations: int = 10_000) -> float:
    """Return the probability of backtest overfitting of choosing the best trial in-sample.

    The folds are split every way into two halves: in-sample (IS) and out-of-sample (OOS). For
    each split the trial with the best mean IS score is chosen; its OOS mean score gets the
    relative rank ``w = rank / (n_trials + 1)`` among all trials (rank 1 = worst; ties take the
    average rank) and the logit ``log(w / (1 - w))``. PBO is the share of splits with logit <= 0:
    the IS winner ranks at or below the OOS median.

    Parameters
    ----------
    scores : np.ndarray, shape (n_trials, n_folds), float64
        Score of each trial on each fold (higher is better, e.g. F1 macro or a Sharpe ratio);
        ``n_trials >= 2``, ``n_folds`` even and >= 2, all finite.
    max_combinations : int, default 10000
        Refuse fold counts whose ``C(n_folds, n_folds/2)`` exceeds this.

    Returns
    -------
    float
        In [0, 1]; about 0.5 or more when the selection is no better than chance.

    Raises
    ------
    ConfigError
        If the matrix has the wrong shape, an odd fold count, too many splits or a non-finite score.

    References
    ----------
    Bailey, Borwein, López de Prado & Zhu, "The Probability of Backtest Overfitting", Journal of
    Computational Finance 20(4), 2017, section 2.
    """
    m = np.asarray(scores, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] < 2 or m.shape[1] < 2 or m.shape[1] % 2:
        raise ConfigError(f"scores shape {m.shape}: give (n_trials >= 2, n_folds) with an even n_folds >= 2")
    if not np.isfinite(m).all():
        t, f = np.argwhere(~np.isfinite(m))[0]
        raise ConfigError(f"scores[{t}, {f}] = {m[t, f]}: every trial needs a finite score on every fold "
                          "(drop failed trials first)")
    n_trials, n_folds = m.shape
    if math.comb(n_folds, n_folds // 2) > max_combinations:
        raise ConfigError(f"n_folds={n_folds} gives {math.comb(n_folds, n_folds // 2)} splits > "
                          f"max_combinations={max_combinations}: use fewer folds")
    below = 0
    combos = list(itertools.combinations(range(n_folds), n_folds // 2))
    for is_folds in combos:
        oos_folds = [f for f in range(n_folds) if f not in is_folds]
        best = int(np.argmax(m[:, list(is_folds)].mean(axis=1)))
        oos = m[:, oos_folds].mean(axis=1)
        rank = float((oos < oos[best]).sum()) + (float((oos == oos[best]).sum()) + 1.0) / 2.0
        w = rank / (n_trials + 1)
        below += math.log(w / (1 - w)) <= 0
    return below / len(combos)
