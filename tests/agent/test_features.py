from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import polars as pl
import pytest

from quantnb.agent import DEFAULT_WARMUP_BARS, MARKET_FEATURES, IncrementalFeatures, compute_features
from quantnb.agent._features import available_feature_names
from quantnb.errors import ConfigError, DataError
from tests.agent._helpers import hand_bars, month_bars, small_bars


def test_incremental_features_equal_batch_row_for_row_on_real_month():
    bars = month_bars()
    assert bars.height == 45_031
    batch = compute_features(bars)
    names = [c for c in batch.columns if c != "ts"]
    assert names == list(MARKET_FEATURES)
    inc = IncrementalFeatures(names, window=3)
    rows = [inc.update(r) for r in bars.iter_rows(named=True)]
    expected = batch.select(names).to_numpy()
    ready = ~np.isnan(expected).any(axis=1)
    assert ready.sum() == bars.height - DEFAULT_WARMUP_BARS + 1
    assert [r is not None for r in rows] == ready.tolist()
    got = np.stack([r for r in rows if r is not None])
    np.testing.assert_allclose(got, expected[ready], rtol=0, atol=1e-9)
    np.testing.assert_allclose(inc.window_array(), expected[-3:], rtol=0, atol=1e-9)


def test_macd_and_rsi_match_pandas_ewm_reference():
    closes = month_bars()["close"].head(3_000).to_numpy()
    feats = compute_features(month_bars().head(3_000)).to_pandas()
    s = pd.Series(closes)
    macd = s.ewm(span=12, adjust=False).mean() - s.ewm(span=26, adjust=False).mean()
    signal = macd.ewm(span=9, adjust=False).mean()
    d = s.diff().iloc[1:]
    avg_gain = d.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    avg_loss = (-d).clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    rsi = 100 - 100 / (1 + avg_gain / avg_loss)
    sl = slice(DEFAULT_WARMUP_BARS, None)
    np.testing.assert_allclose(feats["macd_line"][sl], (macd / s)[sl], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(feats["macd_signal"][sl], (signal / s)[sl], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(feats["rsi_14"][sl], rsi.reindex(s.index)[sl], rtol=1e-9)


def test_bollinger_sma_and_returns_by_hand_on_a_linear_path():
    closes = [100.0 + i for i in range(80)]
    feats = compute_features(hand_bars(closes), warmup_bars=61)
    last = feats.row(-1, named=True)
    win = np.array(closes[-20:])
    sd = win.std()  # population sigma
    assert last["bb_pct_b_20"] == pytest.approx((closes[-1] - (win.mean() - 2 * sd)) / (4 * sd), abs=1e-12)
    assert last["sma_ratio_20"] == pytest.approx(closes[-1] / win.mean() - 1, abs=1e-12)
    assert last["ret_5"] == pytest.approx(np.log(closes[-1] / closes[-6]), abs=1e-15)
    assert last["rsi_14"] == 100.0  # only gains
    flat = compute_features(hand_bars([100.0] * 80), warmup_bars=61).row(-1, named=True)
    assert flat["bb_pct_b_20"] == 0.5 and flat["rsi_14"] == 50.0


def test_features_are_causal_future_bars_do_not_change_past_rows():
    bars = small_bars(800)
    k = 650
    shocked = bars.with_columns(
        pl.when(pl.int_range(pl.len()) > k).then(pl.col("close") * 1.5).otherwise(pl.col("close")).alias("close")
    )
    a = compute_features(bars).head(k + 1).drop("ts").to_numpy()
    b = compute_features(shocked).head(k + 1).drop("ts").to_numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(compute_features(bars).row(k + 1), compute_features(shocked).row(k + 1))


def test_book_features_used_when_present_and_left_out_when_null():
    bars = small_bars(700)
    rng = np.random.default_rng(0)
    n = bars.height
    mid = bars["close"].to_numpy()
    book = bars.with_columns(
        pl.Series("spread_bps_mean", rng.uniform(0.1, 2.0, n)),
        pl.Series("imbalance_10", rng.uniform(-1, 1, n)),
        pl.Series("mid_close", mid),
        pl.Series("micro_price_close", mid * (1 + rng.normal(0, 1e-5, n))),
        pl.Series("bid_depth_10", rng.uniform(1, 50, n)),
        pl.Series("ask_depth_10", rng.uniform(1, 50, n)),
    )
    names = available_feature_names(book)
    assert names[-4:] == ["spread_bps", "imbalance_10", "micro_dev_bps", "log_depth_10"]
    batch = compute_features(book)
    last = batch.row(-1, named=True)
    src = book.row(-1, named=True)
    assert last["micro_dev_bps"] == pytest.approx((src["micro_price_close"] / src["mid_close"] - 1) * 1e4)
    assert last["log_depth_10"] == pytest.approx(np.log1p(src["bid_depth_10"] + src["ask_depth_10"]))
    inc = IncrementalFeatures(names)
    rows = [inc.update(r) for r in book.iter_rows(named=True)]
    np.testing.assert_allclose(rows[-1], batch.drop("ts").to_numpy()[-1], rtol=0, atol=1e-9)
    no_book = bars.with_columns(pl.lit(None, dtype=pl.Float64).alias("spread_bps_mean"))
    assert available_feature_names(no_book) == list(MARKET_FEATURES)


def test_bad_bars_raise_data_error_naming_the_row():
    bars = small_bars(100)
    swapped = pl.concat([bars.slice(0, 50), bars.slice(51, 1), bars.slice(50, 1), bars.slice(52)])
    with pytest.raises(DataError, match="row 51"):
        compute_features(swapped, warmup_bars=61)
    with pytest.raises(DataError, match="row 7"):
        compute_features(bars.with_columns(pl.when(pl.int_range(pl.len()) == 7).then(0.0)
                                           .otherwise(pl.col("close")).alias("close")), warmup_bars=61)
    with pytest.raises(DataError, match="close"):
        compute_features(bars.drop("close"))
    with pytest.raises(ConfigError, match="warmup_bars"):
        compute_features(bars, warmup_bars=10)
    with pytest.raises(ConfigError, match="unknown features"):
        compute_features(bars, ["ret_1", "moon_phase"])


def test_incremental_refuses_duplicate_or_malformed_bars_and_keeps_state():
    inc = IncrementalFeatures(warmup_bars=61)
    t0 = dt.datetime(2022, 1, 1, tzinfo=dt.UTC)
    inc.update({"ts": t0, "close": 100.0})
    with pytest.raises(DataError, match="does not follow"):
        inc.update({"ts": t0, "close": 101.0})
    with pytest.raises(DataError, match="close"):
        inc.update({"ts": t0 + dt.timedelta(minutes=1), "close": float("nan")})
    with pytest.raises(DataError, match="lacks field 'close'"):
        inc.update({"ts": t0 + dt.timedelta(minutes=1)})
    assert inc.n_seen == 1
    assert inc.window_array() is None and not inc.ready


def test_live_stream_started_later_agrees_with_research_once_warmed_up():
    """A live session seeds its indicators from a short history, not from the dataset's first bar."""
    bars = month_bars().head(5_000)
    batch = compute_features(bars).drop("ts").to_numpy()
    inc = IncrementalFeatures()
    rows = [inc.update(r) for r in bars.slice(3_000).iter_rows(named=True)]
    got = np.stack([r for r in rows if r is not None])
    assert got.shape[0] == 2_000 - DEFAULT_WARMUP_BARS + 1
    np.testing.assert_allclose(got, batch[3_000 + DEFAULT_WARMUP_BARS - 1 :], rtol=0, atol=1e-9)
