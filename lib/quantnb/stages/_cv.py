"""Purged k-fold and CPCV datasets for the optimization objective, and PBO over its trials."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from quantnb.errors import ConfigError
from quantnb.evaluation import cpcv_splits, pbo_cscv, purged_kfold_splits

if TYPE_CHECKING:
    from quantnb.classifier import PreparedData, WindowDataset

FOLD_SCORES_ATTR = "fold_f1_macro"  # trial user attribute: F1 macro of each group (k-fold: fold), the PBO columns
SPLIT_SCORES_ATTR = "split_f1_macro"  # trial user attribute: F1 macro of each split (CPCV)
PATH_SCORES_ATTR = "path_f1_macro"  # trial user attribute: F1 macro of each CPCV backtest path


@dataclass(frozen=True)
class CvFold:
    """One purged split: training windows, an inner split for early stopping, one test set per group."""

    train: WindowDataset
    inner_val: WindowDataset
    tests: tuple[WindowDataset, ...]
    groups: tuple[int, ...]

    @property
    def test(self) -> WindowDataset:
        """The test windows of a one-group split (the purged k-fold)."""
        if len(self.tests) != 1:
            raise ValueError(f"split tests {len(self.tests)} groups; use .tests")
        return self.tests[0]


def cv_datasets(data: PreparedData, *, n_folds: int, lookahead_min: int, inner_val_frac: float = 0.15,
                n_test_groups: int | None = None, weight_col: str | None = None) -> list[CvFold]:
    """Build purged, embargoed k-fold (or CPCV) window datasets over the selection span (train + val)."""
    # each split trains on labels that neither overlap its scored groups nor come within lookahead_min of
    # them, stops early on its own last inner_val_frac rows (purged too), refits the scaler; the test
    # split is untouched. ConfigError when a part of a split has no window
    from quantnb.classifier import WindowDataset
    from quantnb.features import FeatureScaler

    frame = pl.concat([data.splits.train, data.splits.val], how="vertical_relaxed")
    t0, t1 = _label_times(frame, lookahead_min)
    what = "cv_folds" if n_test_groups is None else "cv_groups"
    folds = []
    for k, (fit, inner, tests, groups) in enumerate(_split_rows(t0, t1, n_groups=n_folds, n_test_groups=n_test_groups,
                                                                lookahead_min=lookahead_min,
                                                                inner_val_frac=inner_val_frac)):
        scaler = FeatureScaler.fit(frame[fit.tolist()], data.features)
        train, inner_val = (WindowDataset.from_frame(frame[idx.tolist()], scaler, data.seq_len, weight_col=weight_col)
                            for idx in (fit, inner))
        sets = [train, inner_val, *(WindowDataset.from_frame(frame[idx.tolist()], scaler, data.seq_len)
                                    for idx in tests)]
        names = ["training", "inner validation", *(f"test group {g}" for g in groups)]
        for name, ds in zip(names, sets, strict=True):
            if len(ds) == 0:
                raise ConfigError(f"{what}={n_folds}: split {k} has no {name} window of seq_len {data.seq_len}; "
                                  "use fewer groups or more data")
        folds.append(CvFold(train, inner_val, tuple(sets[2:]), groups))
    return folds


def _label_times(frame: pl.DataFrame, lookahead_min: int) -> tuple[np.ndarray, np.ndarray]:
    """Label start and end times, datetime64[us]: ``t1`` when the labels carry it, else ``ts + lookahead``."""
    t0 = frame["ts"].to_numpy().astype("datetime64[us]")
    fixed = t0 + np.timedelta64(dt.timedelta(minutes=lookahead_min)).astype("timedelta64[us]")
    if "t1" not in frame.columns:
        return t0, fixed
    t1 = frame["t1"].to_numpy().astype("datetime64[us]")
    return t0, np.where(np.isnat(t1), fixed, t1)


def _split_rows(t0: np.ndarray, t1: np.ndarray, *, n_groups: int, n_test_groups: int | None, lookahead_min: int,
                inner_val_frac: float) -> list[tuple[np.ndarray, np.ndarray, list[np.ndarray], tuple[int, ...]]]:
    """Per split: fitting rows, inner-validation rows, each test group's rows, the group numbers."""
    horizon = np.timedelta64(dt.timedelta(minutes=lookahead_min)).astype("timedelta64[us]")
    parts: list[tuple[np.ndarray, list[np.ndarray], tuple[int, ...]]]
    if n_test_groups is None:
        folds = purged_kfold_splits(t0, t1, n_folds=n_groups, embargo=horizon)
        parts = [(f.train, [f.test], (k,)) for k, f in enumerate(folds)]
    else:
        splits = cpcv_splits(t0, t1, n_groups=n_groups, n_test_groups=n_test_groups, embargo=horizon)
        parts = [(s.train, list(s.group_tests), s.test_groups) for s in splits]
    out = []
    for rows, tests, groups in parts:
        cut = int(rows.size * (1 - inner_val_frac))
        inner = rows[cut:]
        fit = rows[:cut][t1[rows[:cut]] < t0[inner[0]] - horizon] if inner.size else rows[:cut]
        out.append((fit, inner, tests, groups))
    return out


def cv_rows(t0: np.ndarray, *, n_folds: int, lookahead_min: int, inner_val_frac: float = 0.15,
            n_test_groups: int | None = None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Return, per purged split, the row positions (int64) that fit, stop early and score."""
    t1 = t0 + np.timedelta64(dt.timedelta(minutes=lookahead_min)).astype("timedelta64[us]")
    return [(fit, inner, np.concatenate(tests)) for fit, inner, tests, _ in
            _split_rows(t0, t1, n_groups=n_folds, n_test_groups=n_test_groups, lookahead_min=lookahead_min,
                        inner_val_frac=inner_val_frac)]


def pbo_of_study(trials: list[Any], n_folds: int) -> tuple[float | None, int]:
    """Return the PBO (CSCV, Bailey et al. 2017) of the trials' fold scores (None under 2), and their count."""
    rows = [t.user_attrs.get(FOLD_SCORES_ATTR) for t in trials]
    matrix = [r for r in rows if isinstance(r, list) and len(r) == n_folds]
    if len(matrix) < 2 or n_folds < 2 or n_folds % 2:
        return None, len(matrix)
    return pbo_cscv(np.array(matrix, dtype=np.float64)), len(matrix)
