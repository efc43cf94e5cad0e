"""The agent refuses a classifier fitted or selected on the agent's evaluation span."""

from __future__ import annotations

import datetime as dt

import pytest
import torch

from quantnb.agent import FeatureScaler
from quantnb.classifier import HybridTCNLSTM, build_features, feature_columns, save_model_bundle
from quantnb.errors import ConfigError
from quantnb.stages.agent import AgentParams, check_no_stacking_leak, run_agent
from tests.agent._helpers import month_bars
from tests.conftest import make_project

UTC = dt.UTC


def _meta(train_start: str, val_end: str, lookahead_min: int = 60) -> dict:
    return {"lookahead_min": lookahead_min, "seq_len": 16,
            "data_span": {"train": {"start": train_start, "end": "2022-01-10T00:00:00+00:00"},
                          "val": {"start": "2022-01-10T01:01:00+00:00", "end": val_end}}}


def test_overlap_is_refused_naming_both_spans_and_the_hours():
    ev0, ev1 = dt.datetime(2022, 1, 25, tzinfo=UTC), dt.datetime(2022, 2, 1, tzinfo=UTC)
    with pytest.raises(ConfigError) as err:
        check_no_stacking_leak(_meta("2022-01-01T00:00:00+00:00", "2022-01-27T05:00:00+00:00"), "training_x", ev0, ev1)
    text = str(err.value)
    assert "training_x" in text and "2022-01-01T00:00:00+00:00 .. 2022-01-27T06:00:00+00:00" in text
    assert "2022-01-25T00:00:00+00:00 .. 2022-02-01T00:00:00+00:00" in text and "by 54.0 hours" in text
    # the label horizon counts: validation ending 30 min before the evaluation still reaches into it
    with pytest.raises(ConfigError, match="by 0.5 hours"):
        check_no_stacking_leak(_meta("2022-01-01T00:00:00", "2022-01-24T23:30:00"), "t", ev0, ev1)
    # a clear gap passes
    check_no_stacking_leak(_meta("2022-01-01T00:00:00+00:00", "2022-01-24T22:59:00+00:00"), "t", ev0, ev1)
    with pytest.raises(ConfigError, match="records no usable data_span"):
        check_no_stacking_leak({"seq_len": 16}, "t", ev0, ev1)


def test_the_agent_stage_refuses_an_overlapping_classifier_before_training(tmp_path):
    root = make_project(tmp_path / "proj")
    bars = month_bars().head(3 * 1440)
    out = root / "data" / "processed" / "unknown" / "perp" / "BTC-PERP"
    out.mkdir(parents=True)
    bars.write_parquet(out / "2022-01-01.parquet")
    torch.manual_seed(0)
    names = feature_columns(bars)
    scaler = FeatureScaler.fit(build_features(bars.head(1440), names), names)
    ts = bars["ts"]
    save_model_bundle(root / "runs" / "training_x" / "model",
                      HybridTCNLSTM(len(names), tcn_channels=4, n_blocks=1, lstm_hidden=8), scaler,
                      _meta(ts[0].isoformat(), ts[-200].isoformat()))  # validation into the last half day
    params = AgentParams.parse({"project_dir": str(root), "eval_days": 0.5, "total_timesteps": 100,
                                "learning_starts": 50, "checkpoint_every_steps": 100, "warmup_bars": 60,
                                "classifier_train_id": "training_x", "console_level": None})
    with pytest.raises(ConfigError, match=r"overlaps the agent's evaluation span .* by 9\.7 hours"):
        run_agent(params)
    assert not list((root / "runs").glob("agent_*/sac_model.zip"))
