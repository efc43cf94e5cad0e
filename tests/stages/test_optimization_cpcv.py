"""Optimization with combinatorial purged CV (cv_mode='cpcv') and AFML sample weights (sample_weight_col)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from quantnb.classifier import label_events
from quantnb.errors import ConfigError
from quantnb.stages.optimization import OptimizationParams, run_optimization
from tests.conftest import SAMPLES, make_project
from tests.stages._opt_child import SMALL_STUDY

LOOKAHEAD_MIN = 30


def _weighted_labelled(root: Path, n_days: int = 1) -> str:
    """The first days of the real BTC-PERP month labelled with t1, uniqueness and return_weight."""
    csv = SAMPLES / "ohlcv" / "BTC-PERP_20211231_20220201_1m.csv"
    bars = (pl.read_csv(csv, n_rows=1440 * n_days + 59)
            .with_columns(pl.col("timestamp").str.to_datetime(time_zone="UTC").dt.cast_time_unit("us").alias("ts"))
            .drop("timestamp").with_columns(pl.lit(False).alias("gap_before")))
    labelled = label_events(bars, lookahead_min=LOOKAHEAD_MIN, threshold_short_frac=-0.002,
                            threshold_long_frac=0.002)
    out = root / "data" / "labelled" / "weighted"
    out.mkdir(parents=True)
    labelled.write_parquet(out / "part.parquet")
    (out / "labelling_config.json").write_text(json.dumps({"lookahead_min": LOOKAHEAD_MIN, "suffix": "weighted"}))
    return "data/labelled/weighted"


@pytest.fixture
def weighted_project(tmp_path: Path) -> tuple[Path, str]:
    root = make_project(tmp_path / "weighted")
    return root, _weighted_labelled(root)


def _run(root: Path, labelled: str, **over):
    params = OptimizationParams(project_dir=str(root), labelled_dir=labelled, console_level=None,
                                **{**SMALL_STUDY, "seq_len": [8], "pruner_startup_trials": 5, **over})
    res = run_optimization(params)
    run = json.loads((root / "runs" / res.run_id / "run.json").read_text())
    return res, json.loads(res.best_params_path.read_text()), run


@pytest.mark.slow
def test_cpcv_objective_scores_every_split_and_path_and_reports_pbo_over_the_groups(weighted_project):
    root, labelled = weighted_project
    res, best, run = _run(root, labelled, n_trials=2, cv_mode="cpcv", cv_groups=4, cv_test_groups=3,
                          study_name="cpcv")
    assert best["cv_mode"] == "cpcv" and best["n_splits"] == 4 and best["n_paths"] == 3  # C(4,3), 3/4 * 4
    assert len(best["split_f1_macro"]) == 4 and len(best["path_f1_macro"]) == 3
    assert best["val_f1_macro"] == pytest.approx(np.mean(best["split_f1_macro"]))
    assert best["f1_macro_sd"] == pytest.approx(np.std(best["split_f1_macro"], ddof=1))
    assert len(best["fold_f1_macro"]) == 4 and best["pbo_columns"] == 4 and best["pbo_trials"] == 2
    assert best["pbo"] is not None and 0 <= best["pbo"] <= 1
    assert run["metrics"]["pbo"] == best["pbo"] and run["results"]["n_splits"] == 4
    assert all(0 <= f <= 1 for f in best["path_f1_macro"])


def test_cpcv_parameters_are_checked():
    with pytest.raises(ValidationError, match="cv_test_groups"):
        OptimizationParams(cv_mode="cpcv", cv_groups=4, cv_test_groups=4)
    with pytest.raises(ValidationError, match="cv_folds sets the purged k-fold"):
        OptimizationParams(cv_mode="cpcv", cv_folds=4)
    p = OptimizationParams(cv_mode="cpcv")
    assert p.uses_cv() and p.pbo_columns() == 6 and not OptimizationParams().uses_cv()


def test_cpcv_rows_stop_early_and_fit_clear_of_every_scored_group():
    from quantnb.stages._cv import cv_rows

    t0 = np.datetime64("2022-01-01T00:00", "us") + np.arange(3_000) * np.timedelta64(1, "m")
    h = np.timedelta64(60, "m")
    rows = cv_rows(t0, n_folds=6, lookahead_min=60, n_test_groups=2)
    assert len(rows) == 15
    groups = np.array_split(np.arange(t0.size), 6)
    for fit, inner, test in rows:
        scored = [g for g in groups if np.isin(g, test).all()]
        assert len(scored) == 2
        for g in scored:
            start, end = t0[g[0]], t0[g[-1]] + h
            for part in (fit, inner):
                assert ((t0[part] + h < start - h) | (t0[part] > end + h)).all()
        assert (t0[fit] + h < t0[inner[0]] - h).all()  # early stopping never sees what was fitted on
        assert not set(fit) & set(inner) and not set(inner) & set(test) and not set(fit) & set(test)


@pytest.mark.slow
def test_sample_weights_change_the_objective_and_a_missing_column_is_refused(weighted_project, labelled_project):
    root, labelled = weighted_project
    common = dict(n_trials=1, tcn_channels=[4], lstm_hidden=[8], seed=3, batch_size=[64], lr_min=0.01, lr_max=0.01,
                  epochs_per_trial=2)  # enough steps for the predictions to leave the majority class
    _, plain, _ = _run(root, labelled, study_name="plain", **common)
    _, weighted, run = _run(root, labelled, study_name="weighted", sample_weight_col="return_weight", **common)
    assert plain["params"] == weighted["params"]  # the same setting and seed: only the loss weights differ
    assert weighted["val_f1_macro"] != pytest.approx(plain["val_f1_macro"], abs=1e-6)
    assert weighted["sample_weight_col"] == run["parameters"]["sample_weight_col"] == "return_weight"
    with pytest.raises(ConfigError, match="other fixed settings"):  # a study's trials all use one weighting
        _run(root, labelled, study_name="plain", sample_weight_col="uniqueness", **common)
    old_root, old_labelled = labelled_project  # labels from before the AFML weights: no such column
    with pytest.raises(ConfigError, match=r"sample_weight_col='uniqueness'.*SELL_0002_BUY_0002_30m.*labelling stage"):
        _run(old_root, old_labelled, sample_weight_col="uniqueness", **common)
