"""Training's report against free baselines: persistence (label of bar t - lookahead) and the majority class."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from quantnb.classifier import classification_scores, label_bars
from quantnb.evaluation import compare_to_baseline, persistence_predictions
from quantnb.evaluation._baselines import f1_macro_of_resamples
from tests.conftest import make_project

LOOKAHEAD = 30
SMALL = {"tcn_channels": 4, "kernel_size": 2, "n_blocks": 1, "dropout": 0.0, "lstm_hidden": 8, "lstm_layers": 1,
         "seq_len": 8, "lr": 1e-2, "batch_size": 256, "epochs": 3, "patience": 3, "num_threads": 1}


def _bars(n: int, seed: int, planted: bool) -> pl.DataFrame:
    """1-minute bars of a seeded random walk; planted: 240-minute regimes of drift -1/0/+1 that volume reveals."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 5e-4, n)
    regime = np.repeat(rng.integers(-1, 2, n // 240 + 1), 240)[:n] if planted else np.zeros(n, dtype=np.int64)
    log_close = np.cumsum(noise + 4e-4 * regime)
    close = 40_000.0 * np.exp(log_close)
    open_ = np.concatenate([[close[0]], close[:-1]])
    volume = 100.0 * (2.0 + regime) + rng.uniform(0, 10, n) if planted else rng.uniform(100, 300, n)
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    ts = pl.datetime_range(start, start + dt.timedelta(minutes=n - 1), "1m", eager=True, time_zone="UTC")
    return pl.DataFrame({"ts": ts.dt.cast_time_unit("us"), "open": open_, "high": np.maximum(open_, close) * 1.0001,
                         "low": np.minimum(open_, close) * 0.9999, "close": close, "volume": volume,
                         "gap_before": np.zeros(n, dtype=bool)})


def _train_on(tmp_path: Path, planted: bool) -> dict:
    from quantnb.stages.training import TrainingParams, run_training

    root = make_project(tmp_path / ("planted" if planted else "walk"))
    out = root / "data" / "labelled" / "synthetic"
    out.mkdir(parents=True)
    labelled = label_bars(_bars(6 * 1440, 7, planted), LOOKAHEAD, -0.003, 0.003)
    for (day,), frame in labelled.group_by(pl.col("ts").dt.date(), maintain_order=True):
        frame.write_parquet(out / f"{day}.parquet")
    (out / "labelling_config.json").write_text(json.dumps({"lookahead_min": LOOKAHEAD, "suffix": "synthetic"}))
    res = run_training(TrainingParams(project_dir=str(root), labelled_dir="data/labelled/synthetic",
                                      console_level=None, **SMALL))
    record = json.loads((root / "runs" / res.run_id / "run.json").read_text())
    assert record["metrics"]["baselines"] == res.test["baselines"]
    assert "persistence baseline" in res._repr_html_()
    return res.test


@pytest.mark.slow
def test_on_a_driftless_random_walk_the_classifier_does_not_beat_persistence(tmp_path):
    test = _train_on(tmp_path, planted=False)
    p, m = test["baselines"]["persistence"], test["baselines"]["majority"]
    assert p["coverage"] > 0.95
    assert p["diff_ci_low"] <= 0.0  # no significant edge over the free baseline
    assert "beats" not in p["verdict"]
    assert p["model_minus_baseline"] == pytest.approx(test["f1_macro"] - p["f1_macro"])
    assert test["f1_macro_ci_low"] < test["f1_macro"] < test["f1_macro_ci_high"]  # the figure with its interval
    assert m["f1_macro"] < 0.3  # one class of three predicted: F1 macro at most 1/3 of one class's F1


@pytest.mark.slow
def test_on_a_planted_signal_the_classifier_beats_both_baselines(tmp_path):
    test = _train_on(tmp_path, planted=True)
    for name in ("persistence", "majority"):
        b = test["baselines"][name]
        assert b["diff_ci_low"] > 0.0, b["verdict"]
        assert "the model beats the" in b["verdict"]


def test_persistence_is_the_label_of_the_bar_lookahead_minutes_earlier():
    label_min = np.array([0, 1, 2, 3, 5, 6])
    labels = np.array([2, 0, -1, 1, 0, 2])
    pred, coverage = persistence_predictions(np.array([2, 3, 4, 6, 7, 8]), label_min, labels, 2, fallback=1)
    # minute 2 -> bar 0 (2); 3 -> bar 1 (0); 4 -> bar 2 unlabelled (fallback); 6 -> bar 4 missing (fallback);
    # 7 -> bar 5 (0); 8 -> bar 6 (2)
    assert pred.tolist() == [2, 0, 1, 1, 0, 2]
    assert coverage == pytest.approx(4 / 6)


def test_batched_f1_macro_matches_the_scores_module_and_the_paired_interval_is_reproducible():
    rng = np.random.default_rng(3)
    y, a, b = (rng.integers(0, 3, 500) for _ in range(3))
    idx = rng.integers(0, 500, (4, 500))
    got = f1_macro_of_resamples(y, a, idx)
    want = [classification_scores(y[i], a[i]).f1_macro for i in idx]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    one = compare_to_baseline(y, a, b, baseline="coin", mean_block_len=10, n_boot=200, seed=1)
    assert one == compare_to_baseline(y, a, b, baseline="coin", mean_block_len=10, n_boot=200, seed=1)
    assert one.diff_ci_low < one.model_minus_baseline < one.diff_ci_high
    model_f1 = classification_scores(y, a).f1_macro  # the model's own interval, from the same resamples
    assert one.model_ci_low < model_f1 < one.model_ci_high < 1.0 and f"{model_f1:.3f} (95% CI [" in one.verdict
    same = compare_to_baseline(y, a, a, baseline="itself", n_boot=100)
    assert same.diff_ci_low == same.diff_ci_high == 0.0  # paired: identical predictions never differ
    assert "not distinguishable" in same.verdict
