from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantnb.errors import ConfigError


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = 3) -> np.ndarray:
    """Count (true class, predicted class) pairs.

    Parameters
    ----------
    y_true, y_pred : numpy.ndarray, shape (n,), integer
        True and predicted classes in ``[0, n_classes)``.
    n_classes : int
        Number of classes.

    Returns
    -------
    numpy.ndarray, shape (n_classes, n_classes), int64
        ``cm[i, j]`` = samples of true class ``i`` predicted as ``j`` (rows true, columns predicted,
        as scikit-learn's ``confusion_matrix``).

    Raises
    ------
    ConfigError
        If the shapes differ or a class is out of range.
    """
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ConfigError(f"y_true {t.shape} and y_pred {p.shape} must have the same length")
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n_classes):
        raise ConfigError(f"classes must lie in [0, {n_classes}); got {sorted(set(t.tolist()) | set(p.tolist()))}")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


@dataclass(frozen=True)
class ClassificationScores:
    """F1 scores of a classifier, from its confusion matrix."""

    f1_macro: float
    f1_weighted: float
    f1_per_class: tuple[float, ...]
    confusion: np.ndarray

    @property
    def accuracy(self) -> float:
        """Fraction of samples predicted correctly (0.0 with no samples)."""
        total = int(self.confusion.sum())
        return float(np.trace(self.confusion)) / total if total else 0.0


def f1_from_confusion(cm: np.ndarray) -> ClassificationScores:
    """Compute per-class, macro and weighted F1 from a confusion matrix (rows true, columns predicted).

    ``F1_c = 2 TP / (2 TP + FP + FN)``; a class never true nor predicted has F1 = 0 (scikit-learn's
    ``zero_division=0``), so the macro mean averages over every class. van Rijsbergen, *Information
    Retrieval*, 1979; Sokolova and Lapalme, 2009 (macro averaging).
    """
    m = np.asarray(cm, dtype=np.int64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or (m < 0).any():
        raise ConfigError(f"cm: shape {m.shape}; expected a square matrix of non-negative counts")
    tp = np.diag(m).astype(np.float64)
    denom = m.sum(axis=0) + m.sum(axis=1)  # (TP + FP) + (TP + FN) = 2 TP + FP + FN
    f1 = np.divide(2.0 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    support = m.sum(axis=1).astype(np.float64)
    weighted = float((f1 * support).sum() / support.sum()) if support.sum() else 0.0
    return ClassificationScores(float(f1.mean()), weighted, tuple(float(v) for v in f1), m)


def classification_scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = 3) -> ClassificationScores:
    """Return the F1 scores and confusion matrix of predictions (a :class:`ClassificationScores`).

    Parameters
    ----------
    y_true, y_pred, n_classes
        As in :func:`confusion_matrix`, which raises :class:`ConfigError` on a shape or class out of range.
    """
    return f1_from_confusion(confusion_matrix(y_true, y_pred, n_classes))
