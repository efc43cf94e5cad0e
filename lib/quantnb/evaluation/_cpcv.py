"""Combinatorial purged cross-validation (AFML ch. 12): C(N, k) purged splits and their backtest paths."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from quantnb.errors import ConfigError
from quantnb.evaluation._splits import _clear_of, _times


@dataclass(frozen=True)
class CpcvSplit:
    """One combinatorial split: ``k`` test groups, trained on the purged and embargoed rest."""

    train: np.ndarray
    test: np.ndarray
    test_groups: tuple[int, ...]
    group_tests: tuple[np.ndarray, ...]


def cpcv_split_count(n_groups: int, n_test_groups: int) -> int:
    """Return the number of CPCV splits, ``C(N, k)``.

    Parameters
    ----------
    n_groups, n_test_groups : int
        ``N`` groups, ``k`` of them tested per split; ``1 <= k < N``.
    """
    _check_nk(n_groups, n_test_groups)
    return math.comb(n_groups, n_test_groups)


def cpcv_path_count(n_groups: int, n_test_groups: int) -> int:
    """Return the number of backtest paths, ``phi = k / N * C(N, k) = C(N - 1, k - 1)``.

    Parameters
    ----------
    n_groups, n_test_groups : int
        As for :func:`cpcv_split_count`.

    References
    ----------
    López de Prado, "Advances in Financial Machine Learning", Wiley 2018, section 12.4.1.
    """
    _check_nk(n_groups, n_test_groups)
    return n_test_groups * math.comb(n_groups, n_test_groups) // n_groups


def _check_nk(n: int, k: int) -> None:
    if n < 2 or not 1 <= k < n:
        raise ConfigError(f"cv_groups={n}, cv_test_groups={k}: need cv_groups >= 2 and 1 <= cv_test_groups < "
                          "cv_groups (e.g. 6 groups, 2 tested: 15 splits, 5 paths)")


def cpcv_splits(t0: Any, t1: Any, *, n_groups: int, n_test_groups: int, embargo: Any = 0) -> list[CpcvSplit]:
    """Return the ``C(N, k)`` combinatorial purged splits of labels sorted by start time.

    The labels are cut into ``N`` contiguous groups of (nearly) equal size; each split tests one
    combination of ``k`` groups (in :func:`itertools.combinations` order) and trains on every
    other label that, for each test group ``g``, ends before its start less the embargo
    (``t1[i] < start_g - embargo``) or starts after its end plus the embargo
    (``t0[i] > end_g + embargo``); ``start_g`` is the group's first ``t0``, ``end_g`` its last
    ``t1``. This is the rule of :func:`quantnb.evaluation.purged_kfold_splits`, applied to
    every test group.

    Parameters
    ----------
    t0, t1 : array-like, shape (n,), datetime64 or numeric
        Start and end of each label, sorted by ``t0``, ``t1 >= t0``.
    n_groups : int
        ``N``, 2 <= N <= n.
    n_test_groups : int
        ``k``, 1 <= k < N.
    embargo : timedelta, numpy.timedelta64 or number, default 0
        Gap around each test group, in ``t0``'s units; at least the label horizon is advised.

    Returns
    -------
    list of CpcvSplit
        ``C(N, k)`` splits.

    Raises
    ------
    ConfigError
        If the times are unsorted, ``t1 < t0``, ``N``/``k`` are out of range, or a split keeps no
        training label.

    References
    ----------
    López de Prado, "Advances in Financial Machine Learning", Wiley 2018, ch. 7.4 (purging,
    embargo) and 12.4 (combinatorial purged cross-validation).
    """
    a, b, emb = _times(t0, t1, embargo)
    _check_nk(n_groups, n_test_groups)
    if n_groups > a.size:
        raise ConfigError(f"cv_groups={n_groups}: more groups than the {a.size} labels; use fewer groups")
    everything = np.arange(a.size)
    groups = np.array_split(everything, n_groups)
    out = []
    for combo in itertools.combinations(range(n_groups), n_test_groups):
        keep = np.ones(a.size, dtype=bool)
        for g in combo:
            keep &= _clear_of(a, b, emb, a[groups[g][0]], b[groups[g]].max())
        test = np.concatenate([groups[g] for g in combo])
        keep[test] = False
        if not keep.any():
            raise ConfigError(f"cpcv split testing groups {combo}: no training label is clear of the test groups "
                              f"after purging and the embargo {embargo}; use fewer test groups, more groups, a "
                              "shorter embargo or more data")
        out.append(CpcvSplit(everything[keep], test, combo, tuple(groups[g] for g in combo)))
    return out


def cpcv_paths(n_groups: int, n_test_groups: int) -> np.ndarray:
    """Return which split supplies each group of each backtest path.

    Group ``g`` is tested by ``phi`` splits; path ``p`` takes group ``g`` from the ``p``-th of
    them (in the order of :func:`cpcv_splits`). Each path thus covers every group once, out of
    sample, and each (split, test group) pair belongs to exactly one path.

    Parameters
    ----------
    n_groups, n_test_groups : int
        ``N`` and ``k``, 1 <= k < N.

    Returns
    -------
    np.ndarray, shape (phi, N), int64
        ``paths[p, g]`` = index of the split whose model predicts group ``g`` on path ``p``.

    References
    ----------
    López de Prado, "Advances in Financial Machine Learning", Wiley 2018, section 12.4.1, figure 12.1.
    """
    phi = cpcv_path_count(n_groups, n_test_groups)
    paths = np.zeros((phi, n_groups), dtype=np.int64)
    for g in range(n_groups):
        testing = [s for s, combo in enumerate(itertools.combinations(range(n_groups), n_test_groups)) if g in combo]
        paths[:, g] = testing
    return paths
