from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from quantnb.classifier import (
    FeatureScaler,
    HybridTCNLSTM,
    PreparedData,
    label_suffix,
    load_model_bundle,
    save_model_bundle,
    seed_everything,
)
from quantnb.errors import ConfigError


@pytest.fixture
def bundle_dir(real_data: PreparedData, tmp_path: Path) -> Path:
    seed_everything(1)
    model = HybridTCNLSTM(len(real_data.features), tcn_channels=6, kernel_size=2, n_blocks=2, dropout=0.1,
                          lstm_hidden=5, lstm_layers=2)
    meta = {"seq_len": real_data.seq_len, "label_suffix": label_suffix(15, -0.002, 0.002), "lookahead_min": 15,
            "params": {"lr": 1e-3, "batch_size": np.int64(64), "class_weights": (1.0, 0.5, 2.0)},
            "data_span": real_data.summary(), "metrics": {"test/f1_macro": np.float32(0.25)}}
    return save_model_bundle(tmp_path / "model", model, real_data.scaler, meta)


def test_bundle_round_trip_rebuilds_the_same_model(bundle_dir: Path, real_data: PreparedData) -> None:
    assert sorted(p.name for p in bundle_dir.iterdir()) == ["config_metadata.yaml", "model.pt", "scaler.json"]
    bundle = load_model_bundle(bundle_dir)
    assert bundle.features == real_data.features
    assert np.array_equal(bundle.scaler.mean, real_data.scaler.mean)
    meta = bundle.metadata
    assert meta["seq_len"] == 16 and meta["label_suffix"] == "SELL_0002_BUY_0002_15m"
    assert meta["params"]["batch_size"] == 64 and meta["params"]["class_weights"] == [1.0, 0.5, 2.0]
    assert meta["metrics"]["test/f1_macro"] == pytest.approx(0.25)
    assert meta["data_span"]["train"]["windows"] == len(real_data.train)
    assert meta["library_versions"]["torch"] == torch.__version__ and "polars" in meta["library_versions"]
    assert meta["model"]["class"] == "HybridTCNLSTM" and meta["model"]["params"]["lstm_layers"] == 2
    seed_everything(1)
    original = HybridTCNLSTM(**meta["model"]["params"]).eval()
    x, _ = real_data.test.get_batch(np.arange(8))
    with torch.no_grad():
        assert torch.equal(bundle.model(x), original(x))
    assert not bundle.model.training


@pytest.mark.parametrize("name", ["model.pt", "scaler.json", "config_metadata.yaml"])
def test_missing_file_is_named(bundle_dir: Path, name: str) -> None:
    (bundle_dir / name).unlink()
    with pytest.raises(ConfigError, match=name.replace(".", r"\.")):
        load_model_bundle(bundle_dir)


def test_tampered_or_inconsistent_files_are_refused(bundle_dir: Path, tmp_path: Path) -> None:
    weights = bundle_dir / "model.pt"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(ConfigError, match="model.pt: SHA-256"):
        load_model_bundle(bundle_dir)
    # a scaler from another run, with the YAML hash updated so only the feature lists disagree
    other = tmp_path / "other"
    shutil.copytree(bundle_dir, other)
    shutil.copy(bundle_dir.parent / "model" / "scaler.json", other / "scaler.json")
    state = json.loads((other / "scaler.json").read_text())
    state["feature_names"] = [f"x{i}" for i in range(len(state["feature_names"]))]
    FeatureScaler.from_dict(state).save(other / "scaler.json")
    doc = yaml.safe_load((other / "config_metadata.yaml").read_text())
    doc["files"]["scaler"]["sha256"] = hashlib.sha256((other / "scaler.json").read_bytes()).hexdigest()
    (other / "config_metadata.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="differ"):
        load_model_bundle(other)
    with pytest.raises(ConfigError, match="not found"):
        load_model_bundle(tmp_path / "nowhere")


def test_bad_metadata_is_refused(real_data: PreparedData, tmp_path: Path) -> None:
    model = HybridTCNLSTM(len(real_data.features))
    with pytest.raises(ConfigError, match="reserved"):
        save_model_bundle(tmp_path / "a", model, real_data.scaler, {"model": "mine"})
    with pytest.raises(ConfigError, match="features"):
        save_model_bundle(tmp_path / "b", model, real_data.scaler, {"features": ["a"]})
    with pytest.raises(ConfigError, match="YAML"):
        save_model_bundle(tmp_path / "c", model, real_data.scaler, {"thing": object()})
    assert not (tmp_path / "c").exists()  # refused before anything was written
    with pytest.raises(ConfigError, match="scaler"):
        save_model_bundle(tmp_path / "d", HybridTCNLSTM(len(real_data.features) + 1), real_data.scaler, {})
