"""Combinatorial purged cross-validation: purge and embargo per test group, split and path counts, a hand case."""

from __future__ import annotations

import datetime as dt
import itertools
import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from quantnb.errors import ConfigError
from quantnb.evaluation import cpcv_path_count, cpcv_paths, cpcv_split_count, cpcv_splits


@settings(max_examples=60, deadline=None)
@given(
    horizons=st.lists(st.integers(0, 30), min_size=6, max_size=90),
    gaps=st.data(),
    n_groups=st.integers(2, 7),
    k=st.data(),
    embargo=st.integers(0, 15),
)
@example(horizons=[3] * 6, gaps=None, n_groups=3, k=None, embargo=0)
def test_every_training_label_is_clear_of_each_test_group(horizons, gaps, n_groups, k, embargo):
    n = len(horizons)
    steps = [1] * n if gaps is None else gaps.draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    t0 = np.cumsum(steps)
    t1 = t0 + np.array(horizons)
    n_groups = min(n_groups, n)
    n_test = 1 if k is None else k.draw(st.integers(1, n_groups - 1))
    groups = np.array_split(np.arange(n), n_groups)
    try:
        splits = cpcv_splits(t0, t1, n_groups=n_groups, n_test_groups=n_test, embargo=embargo)
    except ConfigError as e:
        assert "no training label" in str(e)
        return
    assert len(splits) == math.comb(n_groups, n_test)
    for s in splits:
        assert not set(s.train) & set(s.test)
        assert sorted(s.test) == sorted(np.concatenate([groups[g] for g in s.test_groups]))
        for g in s.test_groups:
            start, end = t0[groups[g][0]], t1[groups[g]].max()
            before = s.train[t0[s.train] <= start]
            assert (t1[before] < start - embargo).all()  # ends before the group starts, less the embargo
            after = s.train[t0[s.train] > start]
            assert (t0[after] > end + embargo).all()  # none starts inside the group (nor in its embargo)


@pytest.mark.parametrize(("n", "k"), [(2, 1), (4, 2), (6, 2), (6, 3), (8, 2), (10, 4)])
def test_split_and_path_counts_match_the_formulas(n, k):
    assert cpcv_split_count(n, k) == math.comb(n, k)
    assert cpcv_path_count(n, k) * n == k * math.comb(n, k)  # phi = k/N * C(N, k)
    t0 = np.arange(10 * n)
    splits = cpcv_splits(t0, t0, n_groups=n, n_test_groups=k)
    paths = cpcv_paths(n, k)
    assert len(splits) == math.comb(n, k) and paths.shape == (cpcv_path_count(n, k), n)
    used = set()
    for p in range(paths.shape[0]):
        for g in range(n):
            assert g in splits[paths[p, g]].test_groups  # the split does test that group
            used.add((int(paths[p, g]), g))
    assert used == {(i, g) for i, s in enumerate(splits) for g in s.test_groups}  # each pair on exactly one path
    assert len(used) == paths.size


def test_hand_checked_four_groups_two_tested():
    t0 = np.arange(8)  # groups {0,1} {2,3} {4,5} {6,7}; each label ends one step later
    splits = cpcv_splits(t0, t0 + 1, n_groups=4, n_test_groups=2)
    got = {s.test_groups: s.train.tolist() for s in splits}
    assert got == {(0, 1): [5, 6, 7], (0, 2): [7], (0, 3): [3, 4], (1, 2): [0, 7], (1, 3): [0], (2, 3): [0, 1, 2]}
    assert cpcv_paths(4, 2).tolist() == [[0, 0, 1, 2], [1, 3, 3, 4], [2, 4, 5, 5]]
    assert cpcv_splits(t0, t0 + 1, n_groups=4, n_test_groups=1)[0].train.tolist() == [3, 4, 5, 6, 7]
    embargoed = cpcv_splits(t0, t0 + 1, n_groups=4, n_test_groups=1, embargo=1)
    assert embargoed[0].train.tolist() == [4, 5, 6, 7]  # t0 must exceed 2 + 1
    assert embargoed[1].train.tolist() == [6, 7]  # label 0 ends at 1, not before 2 - 1; label 5 starts at 5 = 4 + 1


def test_datetimes_and_bad_arguments():
    t0 = np.datetime64("2022-01-01T00:00", "us") + np.arange(600) * np.timedelta64(1, "m")
    h = np.timedelta64(10, "m")
    splits = cpcv_splits(t0, t0 + h, n_groups=6, n_test_groups=2, embargo=dt.timedelta(minutes=10))
    assert len(splits) == 15
    for s in splits:
        for rows in s.group_tests:
            start, end = t0[rows[0]], t0[rows[-1]] + h
            near = s.train[(t0[s.train] + h >= start - h) & (t0[s.train] <= end + h)]
            assert near.size == 0
    with pytest.raises(ConfigError, match="non-zero length"):
        cpcv_splits([], [], n_groups=2, n_test_groups=1)
    with pytest.raises(ConfigError, match="cv_test_groups"):
        cpcv_splits(t0, t0, n_groups=4, n_test_groups=4)
    with pytest.raises(ConfigError, match="more groups"):
        cpcv_splits(t0[:3], t0[:3], n_groups=4, n_test_groups=1)
    with pytest.raises(ConfigError, match="no training label"):
        cpcv_splits(np.arange(4), np.arange(4) + 10, n_groups=2, n_test_groups=1)
    assert list(itertools.chain.from_iterable(s.test_groups for s in cpcv_splits(
        np.arange(6), np.arange(6), n_groups=3, n_test_groups=1))) == [0, 1, 2]
