from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from quantnb.classifier import (
    FeatureScaler,
    build_features,
    chronological_split,
    feature_columns,
    label_bars,
    prepare_datasets,
)
from quantnb.errors import ConfigError, DataError
from tests.classifier._builders import bars

L = 15


@pytest.fixture(scope="module")
def labelled(btc_bars: pl.DataFrame) -> pl.DataFrame:
    return label_bars(btc_bars.head(3000), L, -0.002, 0.002)


def test_embargo_keeps_every_label_window_inside_its_split(labelled: pl.DataFrame) -> None:
    s = chronological_split(labelled, train_frac=0.6, val_frac=0.2, lookahead_min=L)
    parts = [s.train, s.val, s.test]
    for before, after in zip(parts, parts[1:], strict=False):
        last, first = before["ts"].max(), after["ts"].min()
        assert first > last + dt.timedelta(minutes=L)  # no window (t, t+L] of `before` reaches `after`
        between = labelled.filter((pl.col("ts") > last) & (pl.col("ts") < first)).height
        assert between >= L  # contiguous sample: at least L rows embargoed
    assert s.train.height == int(labelled.height * 0.6) and s.train["ts"].max() < s.val["ts"].min() < s.test["ts"].min()
    assert sum(p.height for p in parts) == labelled.height - 2 * L
    spans = s.spans()
    assert spans["val"]["rows"] == s.val.height and spans["train"]["start"] == labelled["ts"][0].isoformat()


def test_longer_embargo_is_honoured(labelled: pl.DataFrame) -> None:
    s = chronological_split(labelled, train_frac=0.6, val_frac=0.2, lookahead_min=L, embargo_min=45)
    assert s.val["ts"].min() - s.train["ts"].max() == dt.timedelta(minutes=46)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"embargo_min": L - 1}, "embargo_min"),
    ({"train_frac": 1.0}, "train_frac"),
    ({"val_frac": 0.0}, "val_frac"),
    ({"train_frac": 0.7, "val_frac": 0.3}, "val_frac"),
    ({"lookahead_min": 0}, "lookahead_min"),
])
def test_bad_split_parameters_name_the_field(labelled: pl.DataFrame, kwargs: dict, field: str) -> None:
    params = {"train_frac": 0.6, "val_frac": 0.2, "lookahead_min": L, **kwargs}
    with pytest.raises(ConfigError, match=field):
        chronological_split(labelled, **params)


def test_too_few_rows_for_the_embargo_is_a_data_error(labelled: pl.DataFrame) -> None:
    with pytest.raises(DataError, match="split is empty"):
        chronological_split(labelled.head(40), train_frac=0.5, val_frac=0.25, lookahead_min=L)


def test_scaler_is_fitted_on_train_only(labelled: pl.DataFrame) -> None:
    # make the later part of the month look very different, so a leak would show in the statistics
    n = labelled.height
    shifted = labelled.with_columns(pl.when(pl.int_range(pl.len()) > n // 2).then(pl.col("volume") * 1e4)
                                    .otherwise(pl.col("volume")).alias("volume"))
    data = prepare_datasets(shifted, seq_len=8, train_frac=0.4, val_frac=0.3, lookahead_min=L)
    train_x = data.splits.train.select(data.features).to_numpy()
    complete = train_x[np.isfinite(train_x).all(axis=1)]  # the rows a model can use
    assert data.scaler.mean == pytest.approx(complete.mean(axis=0))
    assert data.scaler.std == pytest.approx(complete.std(axis=0))
    whole = FeatureScaler.fit(build_features(shifted), data.features)
    i = data.features.index("log_volume")
    assert whole.mean[i] > data.scaler.mean[i] + 3.0  # the leak-free mean ignores the later, larger volumes
    z = data.scaler.transform(data.splits.train, dtype=np.float32)
    assert z.dtype == np.float32 and z.flags.c_contiguous
    z = z[np.isfinite(z).all(axis=1)]
    assert np.mean(z, axis=0) == pytest.approx(0.0, abs=1e-5)
    assert np.std(z, axis=0) == pytest.approx(1.0, abs=1e-4)


def test_scaler_json_round_trip_and_errors(tmp_path: Path) -> None:
    frame = pl.DataFrame({"a": [1.0, 2.0, 3.0, float("nan")], "b": [5.0, 5.0, 5.0, 5.0]})
    sc = FeatureScaler.fit(frame, ["a", "b"])
    assert sc.std[1] == 1.0  # constant feature
    path = sc.save(tmp_path / "scaler.json")
    back = FeatureScaler.load(path)
    assert back.feature_names == ["a", "b"] and np.array_equal(back.mean, sc.mean) and np.array_equal(back.std, sc.std)
    out = back.transform(frame)
    assert np.isnan(out[3, 0]) and out[0, 0] == pytest.approx(-np.sqrt(1.5))
    with pytest.raises(ConfigError, match="missing"):
        FeatureScaler.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json"):
        FeatureScaler.load(tmp_path / "bad.json")
    state = sc.to_dict()
    del state["std"]
    with pytest.raises(ConfigError, match="'std'"):
        FeatureScaler.from_dict(state)
    with pytest.raises(ConfigError, match="features"):
        sc.transform(frame.select("a"))


def test_features_are_scale_invariant_and_never_bridge_a_gap() -> None:
    closes = [100.0, 101.0, 102.0, 101.5, 103.0, 104.0]
    base = build_features(bars(closes, minutes=[0, 1, 2, 5, 6, 7]))
    scaled = build_features(bars([10 * c for c in closes], minutes=[0, 1, 2, 5, 6, 7]))
    price_feats = ["log_ret_1m", "log_body", "log_hl_range", "upper_wick", "lower_wick"]
    assert np.allclose(base.select(price_feats).to_numpy(), scaled.select(price_feats).to_numpy(), equal_nan=True)
    ret = base["log_ret_1m"].to_list()
    assert ret[0] is None and ret[3] is None  # first bar, and first bar after the gap
    assert ret[1] == pytest.approx(np.log(101 / 100)) and ret[4] == pytest.approx(np.log(103 / 101.5))


def test_book_columns_add_book_features() -> None:
    df = bars([100.0, 100.5, 101.0], mid_close=[100.0, 100.5, 101.0], micro_price_close=[100.01, 100.5, 100.99],
              spread_bps_mean=[1.0, 1.2, 0.9], bid_depth_10=[5.0, 6.0, 4.0], ask_depth_10=[5.0, 3.0, 8.0],
              imbalance_10=[0.0, 0.33, -0.33], n_trades=[10, 0, 3], buy_volume=[600.0, 0.0, 300.0],
              n_book_updates=[50, 40, 60])
    out = build_features(df)
    for name in ("micro_dev_bps", "spread_bps", "log_depth_ratio_10", "buy_volume_frac", "log_ret_mid_1m"):
        assert name in out.columns
    assert out["micro_dev_bps"][0] == pytest.approx(1.0)
    assert out["log_depth_ratio_10"][1] == pytest.approx(np.log(2.0))
    with pytest.raises(ConfigError, match="open"):
        build_features(df.drop("open"))
    with pytest.raises(ConfigError, match="micro_dev_bps"):
        build_features(bars([1.0, 2.0]), ["log_ret_1m", "micro_dev_bps"])


def test_entirely_null_columns_count_as_absent() -> None:
    # the ETL writes every bar column, null where the source lacks it (an OHLCV file has no book)
    df = bars([100.0, 100.5, 101.0], mid_close=[None, None, None], n_trades=[None, None, None],
              symbol=["BTC-PERP"] * 3)
    names = feature_columns(df)
    assert "log_ret_mid_1m" not in names and "log_n_trades" not in names and "log_volume" in names
    assert build_features(df).columns[-len(names):] == names
    assert "log_volume" not in feature_columns(df.with_columns(volume=pl.lit(None, pl.Float64)))  # book-only
    with pytest.raises(ConfigError, match="log_ret_mid_1m"):
        build_features(df, ["log_ret_1m", "log_ret_mid_1m"])


def test_several_symbols_are_refused_with_a_fix() -> None:
    a = bars([1.0, 1.0, 1.0], symbol=["BTC"] * 3)
    with pytest.raises(DataError, match="several symbols.*filter"):
        label_bars(pl.concat([a, a.with_columns(symbol=pl.lit("ETH"))]), 1, -0.01, 0.01)
