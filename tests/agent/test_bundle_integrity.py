"""A tampered or truncated agent bundle is refused naming the file; an old bundle without digests warns."""

from __future__ import annotations

import json

import pytest
import yaml
from loguru import logger

from quantnb.agent import load_agent_bundle
from quantnb.errors import ConfigError
from tests.agent.test_bundle import bundle_dir

__all__ = ["bundle_dir"]  # the fixture, shared with test_bundle


def _edit_two_numbers(path):
    sc = json.loads(path.read_text())
    sc["mean"][0] += 0.5
    sc["std"][1] *= 1.5
    path.write_text(json.dumps(sc))


def test_saved_bundle_records_the_sha256_of_every_file(bundle_dir):
    d, _, _ = bundle_dir
    doc = yaml.safe_load((d / "config_metadata.yaml").read_text())
    assert sorted(doc["sha256"]) == ["sac_model.zip", "scaler.json"]
    assert all(len(v) == 64 for v in doc["sha256"].values())


def test_two_numbers_edited_in_the_scaler_are_refused_naming_the_file(bundle_dir):
    d, _, _ = bundle_dir
    _edit_two_numbers(d / "scaler.json")
    with pytest.raises(ConfigError, match=r"scaler\.json: SHA-256 differs"):
        load_agent_bundle(d)


def test_the_trader_refuses_a_tampered_bundle(bundle_dir):
    from quantnb.live import load_live_config

    d, _, _ = bundle_dir
    _edit_two_numbers(d / "scaler.json")
    with pytest.raises(ConfigError, match=r"scaler\.json: SHA-256 differs"):
        load_live_config(d.parent, d.name)


@pytest.mark.parametrize("digests", [True, False], ids=["with_digests", "old_bundle_without_digests"])
def test_truncated_model_names_the_file(bundle_dir, digests):
    d, _, _ = bundle_dir
    if not digests:
        doc = yaml.safe_load((d / "config_metadata.yaml").read_text())
        del doc["sha256"]
        (d / "config_metadata.yaml").write_text(yaml.safe_dump(doc))
    data = (d / "sac_model.zip").read_bytes()
    (d / "sac_model.zip").write_bytes(data[: len(data) // 2])  # half: stable-baselines3 asserts "No data found"
    with pytest.raises(ConfigError, match=r"sac_model\.zip") as info:
        load_agent_bundle(d)
    assert "truncated or corrupt" in str(info.value) or "SHA-256 differs" in str(info.value)


def test_bundle_without_digests_loads_with_a_warning_naming_it(bundle_dir):
    d, _, _ = bundle_dir
    doc = yaml.safe_load((d / "config_metadata.yaml").read_text())
    del doc["sha256"]
    (d / "config_metadata.yaml").write_text(yaml.safe_dump(doc))
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(str(m)), level="WARNING", format="{level} {message}")
    try:
        bundle = load_agent_bundle(d)
    finally:
        logger.remove(sink)
    assert bundle.feature_names
    assert any("config_metadata.yaml" in m and "records no SHA-256" in m for m in messages), messages


def test_a_digest_listing_a_missing_file_is_refused(bundle_dir):
    d, _, _ = bundle_dir
    doc = yaml.safe_load((d / "config_metadata.yaml").read_text())
    doc["sha256"]["classifier/model.pt"] = "0" * 64
    (d / "config_metadata.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"classifier/model\.pt: listed in .* but missing"):
        load_agent_bundle(d)
