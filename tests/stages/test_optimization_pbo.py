"""Optimization counts its trials and reports the probability of backtest overfitting (CSCV)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from quantnb.stages.optimization import OptimizationParams, run_optimization
from tests.stages._opt_child import SMALL_STUDY


def _run(root, labelled, **over):
    params = OptimizationParams(project_dir=str(root), labelled_dir=labelled, console_level=None,
                                **{**SMALL_STUDY, "pruner_startup_trials": 5, **over})
    res = run_optimization(params)
    run = json.loads((root / "runs" / res.run_id / "run.json").read_text())
    assert res.selection["n_trials"] == run["metrics"]["n_trials"]
    return json.loads(res.best_params_path.read_text()), run


@pytest.mark.slow
def test_purged_cv_objective_writes_n_trials_and_pbo_to_best_params_and_run_json(labelled_project):
    root, labelled = labelled_project
    best, run = _run(root, labelled, n_trials=3, cv_folds=2, study_name="cv")
    assert best["n_trials"] == 3 and best["cv_folds"] == 2 and best["pbo_trials"] == 3
    assert best["pbo"] in (0.0, 0.5, 1.0)  # 2 folds: two CSCV splits
    assert len(best["fold_f1_macro"]) == 2 and best["val_f1_macro"] == pytest.approx(sum(best["fold_f1_macro"]) / 2)
    assert best["f1_macro_sd"] >= 0
    assert run["metrics"]["pbo"] == best["pbo"] and run["metrics"]["n_trials"] == 3
    assert run["results"]["pbo"] == best["pbo"]


@pytest.mark.slow
def test_single_split_objective_counts_trials_and_says_no_pbo(labelled_project):
    root, labelled = labelled_project
    best, run = _run(root, labelled, n_trials=2, study_name="single")
    assert best["n_trials"] == 2 and best["pbo"] is None and best["cv_folds"] == 1
    assert run["metrics"]["n_trials"] == 2 and run["metrics"]["pbo"] is None


def test_odd_cv_folds_are_refused():
    with pytest.raises(ValidationError, match="even number"):
        OptimizationParams(cv_folds=3)
    assert OptimizationParams(cv_folds=4).cv_folds == 4


def test_cv_rows_keep_fitting_and_early_stopping_labels_clear_of_the_scored_group():
    import numpy as np

    from quantnb.stages._cv import cv_rows

    t0 = np.datetime64("2022-01-01T00:00", "us") + np.arange(2_000) * np.timedelta64(1, "m")
    h = np.timedelta64(60, "m")
    for fit, inner, test in cv_rows(t0, n_folds=4, lookahead_min=60):
        start, end = t0[test[0]], t0[test[-1]] + h
        for rows in (fit, inner):
            before, after = rows[t0[rows] < start], rows[t0[rows] > start]
            assert (t0[before] + h < start - h).all() and (t0[after] > end + h).all()
        assert (t0[fit] + h < t0[inner[0]] - h).all()  # early stopping never sees what was fitted on
        assert not set(fit) & set(inner) and not set(inner) & set(test)
