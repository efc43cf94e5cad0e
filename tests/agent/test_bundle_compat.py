"""Bundles written before the feature layer: they load, or are refused naming the file and the fix."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import yaml
from stable_baselines3 import SAC
from stable_baselines3.common.vec_env import DummyVecEnv

from quantnb.agent import SacParams, load_agent_bundle
from quantnb.errors import ConfigError
from quantnb.features import FeatureScaler
from quantnb.stages.agent import AgentParams
from tests.agent._helpers import WARMUP, WINDOW, eval_env


def _write_format_1_bundle(d, *, feature_names=None):
    """Write an agent bundle exactly as the format-1 writer did (flat YAML, rl scaler format 1)."""
    env = eval_env()
    model = SAC("MlpPolicy", DummyVecEnv([lambda: env]), policy_kwargs={"net_arch": [8]}, buffer_size=10, seed=1,
                device="cpu", verbose=0)
    d.mkdir(parents=True)
    model.save(d / "sac_model.zip")
    sc = env.builder.scaler
    names = list(feature_names or sc.feature_names)
    (d / "scaler.json").write_text(json.dumps({
        "format": "quantnb.rl.FeatureScaler/1", "feature_names": names, "mean": sc.mean.tolist(),
        "std": sc.std.tolist(), "clip_sigma": 5.0, "fit_info": {"n_rows": 600}}))
    n_obs = WINDOW * len(names) + 3
    doc = {"format": "quantnb.rl.agent_bundle/1", "created_at": "2026-11-01T00:00:00+00:00",
           "files": {"model": "sac_model.zip", "scaler": "scaler.json"},
           "observation": {"n_obs": n_obs, "portfolio_state": ["position_frac", "unrealized_pnl_frac", "equity_ratio"]},
           "window": WINDOW, "fee_bps": 5.0, "slippage_bps": 1.0, "max_position_frac": 1.0, "deadband_frac": 0.02,
           "warmup_bars": WARMUP, "state_clip": 10.0, "initial_equity_usd": 10000.0, "symbol": "BTC-PERP",
           "timeframe": "1m", "data_span": {}, "sac_params": {"seed": 1, "buffer_size": 50000, "net_arch": [8]},
           "params": {}, "metrics": {}, "feature_names": names, "versions": {}}
    (d / "config_metadata.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    obs, _ = env.reset()
    return model, obs


def test_format_1_agent_bundle_loads_and_predicts_the_same(tmp_path):
    model, obs = _write_format_1_bundle(tmp_path / "old")
    b = load_agent_bundle(tmp_path / "old")
    assert b.metadata.window == WINDOW and b.metadata.warmup_bars == WARMUP and b.scaler.clip_sigma == 5.0
    assert b.metadata.sac.buffer_size == 50_000 and b.metadata.env.fee_bps == 5.0
    expected = model.predict(obs, deterministic=True)[0]
    np.testing.assert_array_equal(b.model.predict(obs, deterministic=True)[0], expected)
    stream = b.new_feature_stream()
    assert stream.feature_names == b.feature_names and stream.warmup_bars == WARMUP


@pytest.mark.parametrize("changed", ["log_depth_10", "spread_bps_mean"])
def test_format_1_bundle_with_a_redefined_feature_is_refused_naming_file_and_fix(tmp_path, changed):
    names = list(eval_env().builder.feature_names)
    names[-1] = changed
    _write_format_1_bundle(tmp_path / "old", feature_names=names)
    with pytest.raises(ConfigError, match=rf"config_metadata.yaml: .*{changed}.*retrain it with the agent notebook"):
        load_agent_bundle(tmp_path / "old")


def test_research_scaler_format_1_loads_without_clip(tmp_path):
    p = tmp_path / "scaler.json"
    p.write_text(json.dumps({"kind": "quantnb.FeatureScaler", "version": 1, "feature_names": ["a", "b"],
                             "mean": [0.0, 1.0], "std": [1.0, 2.0], "n_rows": 10}))
    sc = FeatureScaler.load(p)
    assert sc.clip_sigma is None and sc.n_rows == 10
    np.testing.assert_array_equal(sc.transform(np.array([[100.0, 1.0]])), [[100.0, 0.0]])
    p.write_text(json.dumps({"kind": "something else"}))
    with pytest.raises(ConfigError, match="scaler.json: not a quantnb FeatureScaler file"):
        FeatureScaler.load(p)


def test_model_bundle_with_a_format_1_scaler_still_loads(tmp_path):
    import torch

    from quantnb.classifier import HybridTCNLSTM, load_model_bundle, save_model_bundle

    torch.manual_seed(0)
    sc = FeatureScaler(["log_ret_1m", "log_body"], [0.0, 0.0], [1.0, 1.0])
    d = save_model_bundle(tmp_path / "model", HybridTCNLSTM(2, tcn_channels=2, n_blocks=1, lstm_hidden=2), sc,
                          {"seq_len": 4})
    old = {"kind": "quantnb.FeatureScaler", "version": 1, "feature_names": ["log_ret_1m", "log_body"],
           "mean": [0.0, 0.0], "std": [1.0, 1.0], "n_rows": 0}
    (d / "scaler.json").write_text(json.dumps(old))
    meta = yaml.safe_load((d / "config_metadata.yaml").read_text())
    meta["files"]["scaler"]["sha256"] = hashlib.sha256((d / "scaler.json").read_bytes()).hexdigest()
    (d / "config_metadata.yaml").write_text(yaml.safe_dump(meta))
    b = load_model_bundle(d)
    assert b.features == ["log_ret_1m", "log_body"] and b.scaler.clip_sigma is None


def test_agent_params_compose_sac_and_env_from_flat_names():
    p = AgentParams.parse({"buffer_size": 300, "window": 8, "net_arch": [16, 16], "seed": None, "fee_bps": None})
    assert p.sac.buffer_size == 300 and p.sac.net_arch == (16, 16) and p.env.window == 8
    assert p.sac.learning_starts == SacParams().learning_starts == 1_000  # SacParams' defaults, one copy
    assert p.env.fee_bps == 5.0  # DEFAULT_FEE_BPS: Binance USD-M VIP 0 taker
    assert AgentParams.parse({"sac": {"buffer_size": 300}}).config_hash() == AgentParams.parse(
        {"buffer_size": 300}).config_hash()
    with pytest.raises(ConfigError, match="net_arch"):
        AgentParams.parse({"net_arch": []})
    with pytest.raises(ConfigError, match="give it once"):
        AgentParams.parse({"buffer_size": 300, "sac": {"buffer_size": 400}})
    with pytest.raises(ConfigError, match="unknown parameter 'windw'"):
        AgentParams.parse({"windw": 8})
