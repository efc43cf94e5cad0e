"""The agent stage with and without the classifier, as the demo runs them (in process, small)."""

from __future__ import annotations

import pytest
import torch

from quantnb.agent import CLASSIFIER_FEATURES, FeatureScaler, load_agent_bundle
from quantnb.classifier import HybridTCNLSTM, build_features, feature_columns, save_model_bundle
from quantnb.stages.agent import AgentParams, run_agent
from tests.agent._helpers import month_bars
from tests.conftest import make_project

SMALL = dict(eval_days=0.5, window=4, total_timesteps=200, buffer_size=300, learning_starts=50, batch_size=32,
             checkpoint_every_steps=100, progress_every_steps=100, net_arch=[8], warmup_bars=60,
             max_episode_steps=100, console_level=None)


@pytest.mark.slow
def test_agent_stage_with_classifier_compares_with_the_plain_agent_and_buy_and_hold(tmp_path):
    root = make_project(tmp_path / "proj")
    bars = month_bars().head(3 * 1440)
    out = root / "data" / "processed" / "unknown" / "perp" / "BTC-PERP"
    out.mkdir(parents=True)
    bars.write_parquet(out / "2022-01-01.parquet")
    torch.manual_seed(0)
    names = feature_columns(bars)
    scaler = FeatureScaler.fit(build_features(bars.head(1440), names), names)
    save_model_bundle(root / "runs" / "training_x" / "model",
                      HybridTCNLSTM(len(names), tcn_channels=4, n_blocks=1, lstm_hidden=8), scaler,
                      {"seq_len": 16, "lookahead_min": 60,  # fitted and selected on the first day only: no leak
                       "data_span": {"train": {"start": str(bars["ts"][0])}, "val": {"end": str(bars["ts"][1439])}}})
    plain = run_agent(AgentParams.parse({**SMALL, "project_dir": str(root)}))
    both = run_agent(AgentParams.parse({**SMALL, "project_dir": str(root), "classifier_train_id": "training_x",
                                        "baseline_agent_id": plain.train_id}))
    assert "clf" in both.train_id and "clf" not in plain.train_id
    table = both.summary()
    assert table.columns == ["metric", "agent", "baseline_agent", "buy_and_hold"]
    row = dict(zip(table["metric"], table["baseline_agent"], strict=True))
    assert row["total_return_frac"] == pytest.approx(plain.metrics["agent"]["total_return_frac"])
    bundle = load_agent_bundle(both.bundle_dir.parent)
    assert bundle.feature_names[-3:] == CLASSIFIER_FEATURES and bundle.classifier is not None
    assert bundle.metadata.classifier == {"train_id": "training_x", "seq_len": 16}
    assert bundle.metadata.sac.buffer_size == 300 and bundle.metadata.env.window == 4
    assert load_agent_bundle(plain.bundle_dir.parent).classifier is None
