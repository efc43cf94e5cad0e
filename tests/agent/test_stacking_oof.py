"""Walk-forward stacking: the agent's classifier retrained per fold; every probability it trains on is out-of-fold."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest
import torch

import quantnb.stages._agent_folds as folds
from quantnb.agent import FeatureScaler, load_agent_bundle
from quantnb.classifier import (
    HybridTCNLSTM,
    TrainConfig,
    build_features,
    feature_columns,
    label_events,
    load_model_bundle,
    save_model_bundle,
)
from quantnb.runs import read_run_record
from quantnb.stages._agent_folds import PROVENANCE_COLUMN, PROVENANCE_FILE
from quantnb.stages.agent import AgentParams, run_agent
from tests.agent._helpers import month_bars
from tests.conftest import make_project

EMBARGO_MIN = 60
SMALL = dict(window=4, total_timesteps=100, buffer_size=200, learning_starts=50, batch_size=32,
             checkpoint_every_steps=100, progress_every_steps=100, net_arch=[8], warmup_bars=60,
             max_episode_steps=50, walk_forward_folds=3, walk_forward_embargo_min=EMBARGO_MIN,
             classifier_train_id="training_x", classifier_epochs=1, console_level=None)


def _project(tmp_path, days: float = 2.5):
    """Bars, their labels and a tiny training run's classifier bundle (its spans reach every fold: no matter)."""
    root = make_project(tmp_path / "proj")
    bars = month_bars().head(int(days * 1440))
    out = root / "data" / "processed" / "unknown" / "perp" / "BTC-PERP"
    out.mkdir(parents=True)
    bars.write_parquet(out / "2022-01-01.parquet")
    lab = root / "data" / "labelled" / "x"
    lab.mkdir(parents=True)
    label_events(bars, lookahead_min=60, threshold_short_frac=-0.001, threshold_long_frac=0.001).write_parquet(
        lab / "2022-01-01.parquet")
    (lab / "labelling_config.json").write_text(json.dumps({"lookahead_min": 60}))
    torch.manual_seed(0)
    names = feature_columns(bars)
    scaler = FeatureScaler.fit(build_features(bars, names), names)
    cfg = TrainConfig(epochs=3, batch_size=256, num_threads=1, patience=2)
    save_model_bundle(root / "runs" / "training_x" / "model",
                      HybridTCNLSTM(len(names), tcn_channels=4, n_blocks=1, lstm_hidden=8), scaler,
                      {"seq_len": 8, "lookahead_min": 60, "training_run_id": "training_x",
                       "parameters": {"labelled_dir": "data/labelled/x", "train_frac": 0.6, "val_frac": 0.2},
                       "train_config": cfg.to_dict(),
                       "data_span": {"train": {"start": str(bars["ts"][0])}, "val": {"end": str(bars["ts"][-1])}}})
    return root


def _utc(text: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


@pytest.mark.slow
def test_every_probability_an_agent_fold_trains_on_comes_from_a_model_whose_labels_end_before_it(tmp_path):
    root = _project(tmp_path)
    res = run_agent(AgentParams.parse({**SMALL, "project_dir": str(root), "walk_forward_holdout_days": 0.25}))
    rec = read_run_record(root / "runs" / res.train_id)
    metrics = rec["metrics"]
    assert metrics["classifier_oof"] is True
    models = {m["model_id"]: m for m in metrics["classifier_models"]}
    assert sorted(models) == ["block_1", "block_2", "block_3"]
    # each model's labels: read back from its own bundle, not from what the agent says of it
    reach = {}
    for mid in models:
        meta = load_model_bundle(root / "runs" / res.train_id / "classifiers" / mid / "model").metadata
        reach[mid] = _utc(meta["data_span"]["label_t1_max"])
        assert meta["stacking"]["model_id"] == mid
    prov = pl.read_parquet(root / "runs" / res.train_id / "classifiers" / PROVENANCE_FILE)
    emb = dt.timedelta(minutes=EMBARGO_MIN)
    folds = metrics["walk_forward"]["folds"] if "walk_forward" in metrics else rec["results"]["walk_forward_folds"]
    assert [f["fold"] for f in folds] == [1, 2]  # fold 0 (training on block 0, no out-of-fold probability) left out
    assert [f["fold"] for f in rec["metrics"]["tear_sheet"]["folds"]] == [1, 2]  # the plot names the same folds
    for f in folds:
        lo = _utc(f["train_start"])
        train = prov.filter((pl.col("ts") >= lo) & (pl.col("ts") < _utc(f["train_end"])))
        assert train.height > 0 and train[PROVENANCE_COLUMN].null_count() < train.height
        for ts, mid in train.drop_nulls(PROVENANCE_COLUMN).iter_rows():
            assert reach[mid] < ts.replace(tzinfo=dt.UTC) - emb, (f["fold"], ts, mid)
        # anchored from block 1: each earlier block's rows carry their own model's probabilities
        assert set(train[PROVENANCE_COLUMN].drop_nulls()) == {f"block_{j}" for j in range(1, f["fold"] + 1)}
        test = prov.filter((pl.col("ts") >= _utc(f["test_start"])) & (pl.col("ts") < _utc(f["test_end"])))
        assert test.drop_nulls(PROVENANCE_COLUMN)[PROVENANCE_COLUMN].unique().to_list() == [f"block_{f['fold'] + 1}"]
    # the exported classifier learnt from labels ending before the live replay's default span, which follows the
    # last fold's test span
    bundle = load_agent_bundle(res.bundle_dir.parent)
    after = bundle.metadata.data_span["after_eval"]
    assert _utc(after[0]) >= _utc(folds[-1]["test_end"])
    live = _utc(bundle.classifier.bundle.metadata["data_span"]["label_t1_max"])
    assert live < _utc(after[0]) - emb and bundle.metadata.classifier["oof"] is True
    assert bundle.metadata.metrics["classifier_oof"] is True


@pytest.mark.slow
def test_a_run_stopped_between_classifiers_resumes_without_retraining_those_it_finished(tmp_path, monkeypatch):
    root = _project(tmp_path, days=2.0)
    params = {**SMALL, "project_dir": str(root)}
    fit = folds.fit_fold_classifier

    def crash_at_block_2(*args, **kwargs):  # the fault: the run dies between two classifiers' trainings
        if kwargs["model_id"] == "block_2":
            raise RuntimeError("killed")
        return fit(*args, **kwargs)

    monkeypatch.setattr(folds, "fit_fold_classifier", crash_at_block_2)
    with pytest.raises(RuntimeError, match="killed"):
        run_agent(AgentParams.parse(params))
    monkeypatch.setattr(folds, "fit_fold_classifier", fit)
    (run_dir,) = (root / "runs").glob("agent_*")
    done = run_dir / "classifiers" / "block_1" / "model"
    assert (done / "config_metadata.yaml").exists()
    assert not (run_dir / "classifiers" / "block_2" / "model").exists()
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in done.iterdir()}
    res = run_agent(AgentParams.parse({**params, "resume": True}))
    assert res.train_id == run_dir.name
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in done.iterdir()} == before  # not retrained
    rec = read_run_record(run_dir)
    assert rec["status"] == "completed" and rec["metrics"]["classifier_oof"] is True
    assert [m["model_id"] for m in rec["metrics"]["classifier_models"]] == ["block_1", "block_2", "block_3"]
    log = (root / "logs" / "agent" / f"{run_dir.name}.log").read_text()
    assert "classifier block_1: trained before the restart" in log
