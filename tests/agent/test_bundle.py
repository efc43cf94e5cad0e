from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import yaml
from stable_baselines3 import SAC
from stable_baselines3.common.vec_env import DummyVecEnv

from quantnb.agent import AgentMetadata, load_agent_bundle, save_agent_bundle
from quantnb.errors import ConfigError
from tests.agent._helpers import WARMUP, WINDOW, eval_env, small_bars


@pytest.fixture
def bundle_dir(tmp_path):
    env = eval_env()
    model = SAC("MlpPolicy", DummyVecEnv([lambda: env]), policy_kwargs={"net_arch": [8]}, buffer_size=10, seed=1,
                device="cpu", verbose=0)
    meta = AgentMetadata(window=WINDOW, fee_bps=5.0, slippage_bps=1.0, max_position_frac=1.0, deadband_frac=0.02,
                         warmup_bars=WARMUP, symbol="BTC-PERP", timeframe="1m",
                         data_span={"train_start": str(small_bars()["ts"][0])},
                         sac_params={"seed": 1}, params={"total_timesteps": 0},
                         metrics={"agent": {"total_return_frac": np.float64(0.01)}})
    save_agent_bundle(tmp_path / "run", model, env.builder.scaler, meta)
    obs, _ = env.reset()
    return tmp_path / "run", model, obs


def test_bundle_round_trip_gives_the_same_predictions_and_live_pieces(bundle_dir):
    d, model, obs = bundle_dir
    assert sorted(p.name for p in d.iterdir()) == ["config_metadata.yaml", "sac_model.zip", "scaler.json"]
    b = load_agent_bundle(d)
    expected, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(b.model.predict(obs, deterministic=True)[0], expected)
    assert b.feature_names == b.metadata.feature_names == tuple(b.scaler.feature_names)
    assert b.observation_builder.n_obs == obs.shape[0] and b.observation_builder.window == WINDOW
    assert (b.action_interpreter.max_position_frac, b.action_interpreter.deadband_frac) == (1.0, 0.02)
    assert (b.fill_model.fee_bps, b.fill_model.slippage_bps) == (5.0, 1.0)
    stream = b.new_feature_stream()
    assert stream.window == WINDOW and stream.warmup_bars == WARMUP and stream.feature_names == b.feature_names
    doc = yaml.safe_load((d / "config_metadata.yaml").read_text())
    assert doc["metrics"]["agent"]["total_return_frac"] == 0.01
    assert set(doc["versions"]) >= {"python", "stable-baselines3", "torch", "gymnasium", "numpy", "polars"}
    assert doc["symbol"] == "BTC-PERP" and doc["observation"]["n_obs"] == obs.shape[0]


@pytest.mark.parametrize("missing", ["config_metadata.yaml", "scaler.json", "sac_model.zip"])
def test_missing_bundle_file_is_a_config_error_naming_it(bundle_dir, missing):
    d, _, _ = bundle_dir
    (d / missing).unlink()
    with pytest.raises(ConfigError, match=missing.replace(".", r"\.")):
        load_agent_bundle(d)


def test_inconsistent_bundle_files_are_config_errors(bundle_dir, tmp_path):
    d, _, _ = bundle_dir
    with pytest.raises(ConfigError, match="directory not found"):
        load_agent_bundle(tmp_path / "nope")
    cfg = yaml.safe_load((d / "config_metadata.yaml").read_text())
    cfg["env"]["window"] = WINDOW + 1
    (d / "config_metadata.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="different runs"):
        load_agent_bundle(d)
    cfg["env"]["window"] = WINDOW
    (d / "config_metadata.yaml").write_text(yaml.safe_dump(cfg))
    sc = json.loads((d / "scaler.json").read_text())
    sc["feature_names"] = list(reversed(sc["feature_names"]))
    (d / "scaler.json").write_text(json.dumps(sc))
    cfg["sha256"]["scaler.json"] = hashlib.sha256((d / "scaler.json").read_bytes()).hexdigest()  # past the digest
    (d / "config_metadata.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="scaler.json lists features"):
        load_agent_bundle(d)
