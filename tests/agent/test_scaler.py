from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from quantnb.agent import FeatureScaler, compute_features
from quantnb.errors import ConfigError
from tests.agent._helpers import small_bars


def test_scaler_fits_training_rows_only_and_round_trips_json(tmp_path):
    feats = compute_features(small_bars(1_000), warmup_bars=100)
    names = [c for c in feats.columns if c != "ts"]
    train = feats.head(700)
    sc = FeatureScaler.fit(train, names, clip_sigma=4.0)
    rows = train.drop_nulls().select(names).to_numpy()
    np.testing.assert_allclose(sc.mean, rows.mean(axis=0))
    np.testing.assert_allclose(sc.std, rows.std(axis=0))
    assert sc.fit_info["n_rows"] == 700 - 99
    assert sc.fit_info["last_ts"] == str(train["ts"][-1])
    z = sc.transform(rows)
    np.testing.assert_allclose(z.mean(axis=0)[np.abs(z).max(axis=0) < 4.0], 0.0, atol=1e-9)
    assert np.abs(sc.transform(feats.select(names).to_numpy()[700:])).max() <= 4.0
    path = sc.save(tmp_path / "scaler.json")
    back = FeatureScaler.load(path)
    assert back.feature_names == sc.feature_names and back.clip_sigma == 4.0
    np.testing.assert_array_equal(back.transform(rows), z)


def test_constant_feature_gets_unit_scale_and_nan_stays_nan():
    df = pl.DataFrame({"a": [1.0, 1.0, 1.0], "b": [0.0, 1.0, 2.0]})
    sc = FeatureScaler.fit(df, ["a", "b"])
    assert sc.std[0] == 1.0
    out = sc.transform(np.array([[1.0, np.nan]]))
    assert out[0, 0] == 0.0 and np.isnan(out[0, 1])


def test_scaler_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="scaler file is missing"):
        FeatureScaler.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{truncated")
    with pytest.raises(ConfigError, match="bad.json: not valid JSON"):
        FeatureScaler.load(bad)
    sc = FeatureScaler(["a"], [0.0], [1.0])
    d = sc.to_dict()
    del d["std"]
    (tmp_path / "partial.json").write_text(json.dumps(d))
    with pytest.raises(ConfigError, match="partial.json: key 'std' is missing"):
        FeatureScaler.load(tmp_path / "partial.json")
    with pytest.raises(ConfigError, match="are not columns"):
        FeatureScaler.fit(pl.DataFrame({"a": [1.0, 2.0]}), ["a", "b"])
    with pytest.raises(ConfigError, match="n_features=1"):
        sc.transform(np.zeros((2, 3)))
