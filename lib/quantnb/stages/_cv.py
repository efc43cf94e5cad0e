"""Purged k-fold datasets for the optimization objective (``cv_folds``), and PBO over its trials."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from quantnb.errors import ConfigError
from quantnb.evaluation import pbo_cscv, purged_kfold_splits

if TYPE_CHECKING:
    from quantnb.research import PreparedData, WindowDataset

FOLD_SCORES_ATTR = "fold_f1_macro"  # trial user attribute: F1 macro of each fold's test group


@dataclass(frozen=True)
class CvFold:
    """One purged fold: training windows, an inner split for early stopping, and the scored test group."""

    train: WindowDataset
    inner_val: WindowDataset
    test: WindowDataset


def cv_datasets(data: PreparedData, *, n_folds: int, lookahead_min: int, inner_val_frac: float = 0.15) -> list[CvFold]:
    """Build purged, embargoed k-fold window datasets over the selection span (train + validation).

    The test split of ``data`` stays untouched. Each fold scores one contiguous group of the
    selection span; it trains on the other labels that neither overlap the group nor come within
    ``lookahead_min`` of it (:func:`quantnb.evaluation.purged_kfold_splits`), and stops early on
    the last ``inner_val_frac`` of its own training rows (purged likewise), never on the group it is scored on.
    The scaler is refitted on each fold's training rows.

    Parameters
    ----------
    data : PreparedData
        From :func:`quantnb.research.prepare_datasets`; its ``splits.train`` and ``splits.val`` frames.
    n_folds : int
        Test groups, >= 2.
    lookahead_min : int
        Label horizon, minutes: labels end at ``ts + lookahead_min``; also the embargo.
    inner_val_frac : float, default 0.15
        Share of each fold's training rows held out for early stopping.

    Returns
    -------
    list of CvFold

    Raises
    ------
    ConfigError
        If a fold has no window in one of its parts (too little data for ``n_folds``).
    """
    from quantnb.features import FeatureScaler
    from quantnb.research import WindowDataset

    frame = pl.concat([data.splits.train, data.splits.val], how="vertical_relaxed")
    t0 = frame["ts"].to_numpy().astype("datetime64[us]")
    folds = []
    for k, (fit, inner, test) in enumerate(cv_rows(t0, n_folds=n_folds, lookahead_min=lookahead_min,
                                                   inner_val_frac=inner_val_frac)):
        fit_frame, inner_frame, test_frame = (frame[idx.tolist()] for idx in (fit, inner, test))
        scaler = FeatureScaler.fit(fit_frame, data.features)
        sets = [WindowDataset.from_frame(f, scaler, data.seq_len) for f in (fit_frame, inner_frame, test_frame)]
        for name, ds in zip(("training", "inner validation", "test"), sets, strict=True):
            if len(ds) == 0:
                raise ConfigError(f"cv_folds={n_folds}: fold {k} has no {name} window of seq_len {data.seq_len}; "
                                  "use fewer folds or more data")
        folds.append(CvFold(*sets))
    return folds


def cv_rows(t0: np.ndarray, *, n_folds: int, lookahead_min: int,
            inner_val_frac: float = 0.15) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Return, per purged fold, the row positions that fit, stop early (inner validation) and score.

    Parameters
    ----------
    t0 : np.ndarray, shape (n,), datetime64[us]
        Bar times, ascending; each label ends ``lookahead_min`` later.
    n_folds : int
        Test groups, >= 2.
    lookahead_min : int
        Label horizon and embargo, minutes.
    inner_val_frac : float, default 0.15
        Share of each fold's training rows (the last ones) held out for early stopping; the fitting
        rows whose labels reach within ``lookahead_min`` of it are purged.

    Returns
    -------
    list of (fit, inner, test) : tuple of np.ndarray, int64
    """
    horizon = np.timedelta64(dt.timedelta(minutes=lookahead_min)).astype("timedelta64[us]")
    out = []
    for fold in purged_kfold_splits(t0, t0 + horizon, n_folds=n_folds, embargo=horizon):
        rows = fold.train
        cut = int(rows.size * (1 - inner_val_frac))
        inner = rows[cut:]
        fit = rows[:cut][t0[rows[:cut]] + 2 * horizon < t0[inner[0]]] if inner.size else rows[:cut]
        out.append((fit, inner, fold.test))
    return out


def pbo_of_study(trials: list[Any], n_folds: int) -> tuple[float | None, int]:
    """Return the PBO (CSCV) over the completed trials' fold scores, and how many trials entered it.

    Parameters
    ----------
    trials : list of optuna.trial.FrozenTrial
        The study's trials; those with ``n_folds`` fold scores in their user attributes count.
    n_folds : int
        Folds per trial (``cv_folds``).

    Returns
    -------
    (float or None, int)
        PBO, None with fewer than 2 such trials or an odd fold count; the trial count.
    """
    rows = [t.user_attrs.get(FOLD_SCORES_ATTR) for t in trials]
    matrix = [r for r in rows if isinstance(r, list) and len(r) == n_folds]
    if len(matrix) < 2 or n_folds < 2 or n_folds % 2:
        return None, len(matrix)
    return pbo_cscv(np.array(matrix, dtype=np.float64)), len(matrix)
