"""Purged k-fold and walk-forward splits on label end times, with an embargo (AFML ch. 7)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from quantnb.errors import ConfigError


@dataclass(frozen=True)
class Fold:
    """One train/test split, as row positions into the arrays given."""

    train: np.ndarray
    test: np.ndarray
    test_start: Any
    test_end: Any


def _times(t0: Any, t1: Any, embargo: Any) -> tuple[np.ndarray, np.ndarray, Any]:
    a, b = np.asarray(t0), np.asarray(t1)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ConfigError(f"t0 shape {a.shape}, t1 shape {b.shape}: give two 1-d arrays of the same non-zero length")
    emb = embargo
    if a.dtype.kind == "M":
        a, b = a.astype("datetime64[us]"), b.astype("datetime64[us]")
        if isinstance(embargo, (dt.timedelta, np.timedelta64)):
            emb = np.timedelta64(embargo).astype("timedelta64[us]")
        elif embargo == 0:
            emb = np.timedelta64(0, "us")
        else:
            raise ConfigError(f"embargo={embargo!r}: with datetime labels give a timedelta, e.g. timedelta(hours=1)")
    if (np.diff(a) < np.zeros((), dtype=np.diff(a).dtype)).any():
        i = int(np.flatnonzero(np.diff(a) < np.zeros((), dtype=np.diff(a).dtype))[0]) + 1
        raise ConfigError(f"t0[{i}] = {a[i]} is before t0[{i - 1}] = {a[i - 1]}: sort the labels by start time")
    if (b < a).any():
        i = int(np.flatnonzero(b < a)[0])
        raise ConfigError(f"label {i}: t1 = {b[i]} is before t0 = {a[i]}; t1 is the label's end time (>= t0)")
    if emb < emb * 0:
        raise ConfigError(f"embargo={embargo}: give a non-negative duration")
    return a, b, emb


def _clear_of(a: np.ndarray, b: np.ndarray, emb: Any, start: Any, end: Any) -> np.ndarray:
    """Mask of labels that end before ``start - emb`` or start after ``end + emb`` (the purge and embargo rule)."""
    return (b < start - emb) | (a > end + emb)


def _fold(a: np.ndarray, b: np.ndarray, emb: Any, test: np.ndarray, candidates: np.ndarray) -> Fold:
    start, end = a[test[0]], b[test].max()
    keep = _clear_of(a[candidates], b[candidates], emb, start, end)
    return Fold(np.sort(candidates[keep]), test, start, end)


def purged_kfold_splits(t0: Any, t1: Any, *, n_folds: int, embargo: Any = 0) -> list[Fold]:
    """Split labels into ``n_folds`` contiguous test groups, each trained on the other labels, purged and embargoed.

    A label ``i`` (span ``[t0[i], t1[i]]``) stays in a fold's training set only if it ends before the
    test span starts less the embargo (``t1[i] < test_start - embargo``) or starts after the test
    span ends plus the embargo (``t0[i] > test_end + embargo``), where ``test_start`` is the first test
    ``t0`` and ``test_end`` the last test ``t1``. No training label thus overlaps the test labels, nor
    comes within ``embargo`` of them on either side.

    Parameters
    ----------
    t0, t1 : array-like, shape (n,), datetime64 or numeric
        Start (decision bar) and end (label horizon) of each label, sorted by ``t0``, ``t1 >= t0``.
    n_folds : int
        Test groups, 2 <= n_folds <= n.
    embargo : timedelta, numpy.timedelta64 or number, default 0
        Gap, in ``t0``'s units; at least the label horizon is advised.

    Returns
    -------
    list of Fold
        ``n_folds`` folds in time order; test groups partition ``0 .. n-1``.

    Raises
    ------
    ConfigError
        If the times are unsorted, ``t1 < t0``, or ``n_folds`` is out of range.

    References
    ----------
    López de Prado, "Advances in Financial Machine Learning", Wiley 2018, ch. 7.4 (purging, embargo).
    """
    a, b, emb = _times(t0, t1, embargo)
    if not 2 <= n_folds <= a.size:
        raise ConfigError(f"n_folds={n_folds}: need 2 <= n_folds <= {a.size} (the labels)")
    everything = np.arange(a.size)
    groups = np.array_split(everything, n_folds)
    return [_fold(a, b, emb, g, np.setdiff1d(everything, g)) for g in groups]


def walk_forward_splits(
    t0: Any, t1: Any, *, n_folds: int, embargo: Any = 0, mode: Literal["anchored", "rolling"] = "anchored",
) -> list[Fold]:
    """Split labels into ``n_folds + 1`` contiguous blocks; fold ``k`` tests on block ``k + 1`` and trains on the past.

    ``anchored`` trains on blocks ``0 .. k``, ``rolling`` on block ``k`` only (a fixed-length
    window). Training labels must end before the test start less the embargo
    (``t1[i] < test_start - embargo``): the rows the label horizon would leak are purged.

    Parameters
    ----------
    t0, t1 : array-like, shape (n,), datetime64 or numeric
        Label start and end times, sorted by ``t0``, ``t1 >= t0``.
    n_folds : int
        Test blocks, 1 <= n_folds < n.
    embargo : timedelta, numpy.timedelta64 or number, default 0
        Gap before each test start, in ``t0``'s units.
    mode : {"anchored", "rolling"}, default "anchored"
        Expanding or fixed-length training window.

    Returns
    -------
    list of Fold
        In time order; a fold whose purged training set is empty is refused.

    Raises
    ------
    ConfigError
        If the times are unsorted, ``n_folds`` or ``mode`` is out of range, or a fold has no training label.

    References
    ----------
    López de Prado, "Advances in Financial Machine Learning", Wiley 2018, ch. 7 and 12.
    """
    a, b, emb = _times(t0, t1, embargo)
    if mode not in ("anchored", "rolling"):
        raise ConfigError(f"walk_forward_mode={mode!r}: give 'anchored' or 'rolling'")
    if not 1 <= n_folds < a.size:
        raise ConfigError(f"n_folds={n_folds}: need 1 <= n_folds < {a.size} (the labels)")
    blocks = np.array_split(np.arange(a.size), n_folds + 1)
    folds = []
    for k in range(n_folds):
        past = np.concatenate(blocks[: k + 1]) if mode == "anchored" else blocks[k]
        fold = _fold(a, b, emb, blocks[k + 1], past)
        if fold.train.size == 0:
            raise ConfigError(f"walk-forward fold {k}: no training label ends before {fold.test_start} - embargo "
                              f"{embargo}; use fewer folds, a shorter embargo or more data")
        folds.append(fold)
    return folds
