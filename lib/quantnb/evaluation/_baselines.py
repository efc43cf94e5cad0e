"""Free classification baselines (persistence, majority class) and a paired block bootstrap of F1 macro."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantnb.errors import ConfigError
from quantnb.evaluation._bootstrap import Record, default_block_len, stationary_bootstrap_indices

N_CLASSES = 3


def f1_macro_of_resamples(y_true: np.ndarray, y_pred: np.ndarray, idx: np.ndarray,
                          n_classes: int = N_CLASSES) -> np.ndarray:
    """Return the F1 macro over ``n_classes`` classes of each resample of the rows (zero_division=0, as sklearn)."""
    rows = np.atleast_2d(idx)
    m = rows.shape[0]
    k = int(n_classes)
    code = y_true[rows] * k + y_pred[rows] + (k * k) * np.arange(m)[:, None]
    cm = np.bincount(code.ravel(), minlength=m * k * k).reshape(m, k, k)
    tp = np.diagonal(cm, axis1=1, axis2=2).astype(np.float64)
    denom = cm.sum(axis=2) + cm.sum(axis=1)  # support + predicted count
    return np.divide(2.0 * tp, denom, out=np.zeros_like(tp), where=denom > 0).mean(axis=1)


def persistence_predictions(end_minute: np.ndarray, label_minute: np.ndarray, labels: np.ndarray,
                            lookahead_min: int, fallback: int) -> tuple[np.ndarray, float]:
    """Predict each row's class as the label of the bar ``lookahead_min`` minutes earlier.

    That label's horizon ends at the decision time, so it is known then: the free baseline any
    classifier of forward returns must beat.

    Parameters
    ----------
    end_minute : np.ndarray, shape (n,), int64
        Minute (e.g. epoch minutes) of each scored row.
    label_minute : np.ndarray, shape (k,), int64
        Minute of every labelled bar, ascending and unique.
    labels : np.ndarray, shape (k,), int
        Their classes; -1 where unlabelled.
    lookahead_min : int
        The labelling lookahead, minutes (>= 1).
    fallback : int
        Class predicted where the earlier bar is missing or unlabelled (e.g. the majority class).

    Returns
    -------
    (predictions, coverage) : tuple of np.ndarray (n,) int64 and float
        ``coverage`` is the share of rows that had an earlier label.

    Raises
    ------
    ConfigError
        If ``lookahead_min`` < 1 or the label arrays differ in length.
    """
    if lookahead_min < 1 or len(label_minute) != len(labels):
        raise ConfigError(f"lookahead_min={lookahead_min}, {len(label_minute)} label times and {len(labels)} labels: "
                          "give lookahead_min >= 1 and one time per label")
    want = np.asarray(end_minute, dtype=np.int64) - int(lookahead_min)
    lm = np.asarray(label_minute, dtype=np.int64)
    pos = np.clip(np.searchsorted(lm, want), 0, max(lm.size - 1, 0))
    lab = np.asarray(labels, dtype=np.int64)
    hit = (lm[pos] == want) & (lab[pos] >= 0) if lm.size else np.zeros(want.size, dtype=bool)
    pred = np.where(hit, lab[pos] if lm.size else fallback, int(fallback)).astype(np.int64)
    return pred, float(hit.mean()) if hit.size else 0.0


@dataclass(frozen=True)
class BaselineComparison(Record):
    """A model's F1 macro against one baseline's on the same rows, with a paired block bootstrap CI."""

    baseline: str
    f1_macro: float
    model_minus_baseline: float
    diff_ci_low: float
    diff_ci_high: float
    model_ci_low: float
    model_ci_high: float
    level: float
    mean_block_len: float
    n_boot: int
    verdict: str


def compare_to_baseline(y_true: np.ndarray, y_model: np.ndarray, y_base: np.ndarray, *, baseline: str,
                        mean_block_len: float | None = None, n_boot: int = 1000, level: float = 0.95,
                        seed: int = 0, chunk: int = 50, n_classes: int = N_CLASSES) -> BaselineComparison:
    """Compare a classifier's F1 macro with a baseline's by a paired stationary block bootstrap over rows.

    Both predictions are scored on the same resampled rows, so the interval is of the difference
    itself (not of two separate scores).

    Parameters
    ----------
    y_true, y_model, y_base : np.ndarray, shape (n,), int
        True classes and the two predictions, in {0, 1, 2}, rows in time order, n >= 2.
    baseline : str
        The baseline's name, for the verdict.
    mean_block_len : float, optional
        Mean block length, rows; give the label horizon (lookahead) so overlapping labels stay
        together; default ``n ** (1/3)``.
    n_boot : int, default 1000
        Paired resamples.
    level : float, default 0.95
        Two-sided coverage.
    seed : int, default 0
        Seed of the resamples; the same seed and inputs give the same interval.
    chunk : int, default 50
        Resamples drawn at once (memory ``chunk * n``); keep it fixed for reproducible figures.
    n_classes : int, default 3
        Classes ``0 .. n_classes - 1`` the F1 macro averages over (2 for meta-labels).

    Raises
    ------
    ConfigError
        If the arrays differ in length, are too short, or hold a class outside {0, 1, 2}.
    """
    yt, ym, yb = (np.asarray(a, dtype=np.int64) for a in (y_true, y_model, y_base))
    if not (yt.shape == ym.shape == yb.shape) or yt.ndim != 1 or yt.size < 2:
        raise ConfigError(f"y_true {yt.shape}, y_model {ym.shape}, y_base {yb.shape}: give three equal 1-d arrays "
                          "of >= 2 rows")
    for name, a in (("y_true", yt), ("y_model", ym), ("y_base", yb)):
        if a.min() < 0 or a.max() >= n_classes:
            raise ConfigError(f"{name}: classes {sorted(set(a.tolist()))[:5]} outside 0 .. {n_classes - 1}; drop "
                              "unlabelled rows")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"level={level}: give a coverage strictly between 0 and 1, e.g. 0.95")
    block = min(float(yt.size), default_block_len(yt.size) if mean_block_len is None else float(mean_block_len))
    whole = np.arange(yt.size)
    f1_model = float(f1_macro_of_resamples(yt, ym, whole, n_classes)[0])
    f1_base = float(f1_macro_of_resamples(yt, yb, whole, n_classes)[0])
    diffs, models = [], []
    for k in range(0, n_boot, chunk):
        idx = stationary_bootstrap_indices(yt.size, min(chunk, n_boot - k), max(block, 1.0), seed + k)
        models.append(f1_macro_of_resamples(yt, ym, idx, n_classes))
        diffs.append(models[-1] - f1_macro_of_resamples(yt, yb, idx, n_classes))
    q = [(1 - level) / 2, (1 + level) / 2]
    lo, hi = np.quantile(np.concatenate(diffs), q)
    m_lo, m_hi = np.quantile(np.concatenate(models), q)
    diff = f1_model - f1_base
    ci = f"{level:.0%} CI [{lo:+.3f}, {hi:+.3f}]"
    if lo > 0:
        words = f"the model beats the {baseline} baseline"
    elif hi < 0:
        words = f"the model is worse than the {baseline} baseline"
    else:
        words = f"the model is not distinguishable from the {baseline} baseline"
    verdict = (f"Test F1 macro {f1_model:.3f} ({level:.0%} CI [{m_lo:.3f}, {m_hi:.3f}]) vs {baseline} "
               f"{f1_base:.3f}: difference {diff:+.3f} ({ci}); "
               f"{words}.")
    return BaselineComparison(baseline, f1_base, diff, float(lo), float(hi), float(m_lo), float(m_hi), level, block,
                              n_boot, verdict)
