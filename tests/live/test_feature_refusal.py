"""An agent whose features the feed cannot give is refused at start, in replay and in testnet."""

from __future__ import annotations

import dataclasses
import socket
import time

import polars as pl
import pytest

from quantnb.agent import CLASSIFIER_FEATURES
from quantnb.errors import ConfigError
from quantnb.live import ReplayProvider, RiskLimits, SessionSettings, build_trader, load_live_config
from quantnb.live._book_feed import check_live_features, with_book_features
from tests.live._helpers import sample_bars, save_tiny_bundle

TRAIN_ID = "agent_spread_20240101_000000"


@pytest.fixture(scope="module")
def spread_bundle(tmp_path_factory):
    """A tiny agent trained on bars with a book column: its features include spread_bps."""
    runs = tmp_path_factory.mktemp("runs")
    ohlcv = sample_bars(400)
    with_book = ohlcv.with_columns(((pl.col("high") - pl.col("low")) / pl.col("close") * 1e3).alias("spread_bps_mean"))
    save_tiny_bundle(runs / TRAIN_ID, with_book, with_book["ts"][300], learn_steps=60)
    return runs, ohlcv, with_book


def test_replay_on_ohlcv_bars_of_an_agent_needing_spread_bps_is_refused_at_start(spread_bundle):
    runs, ohlcv, with_book = spread_bundle
    cfg = load_live_config(runs, TRAIN_ID)
    assert "spread_bps" in cfg.bundle.feature_names
    with pytest.raises(ConfigError, match=r"spread_bps \(needs column spread_bps_mean\)"):
        build_trader(cfg, SessionSettings(limits=RiskLimits(0.5, 1.0)), replay_bars=ohlcv,
                     replay_start_ts=ohlcv["ts"][300])
    all_null = with_book.with_columns(pl.lit(None, pl.Float64).alias("spread_bps_mean"))
    with pytest.raises(ConfigError, match="spread_bps_mean"):
        build_trader(cfg, SessionSettings(limits=RiskLimits(0.5, 1.0)), replay_bars=all_null,
                     replay_start_ts=ohlcv["ts"][300])
    trader = build_trader(cfg, SessionSettings(limits=RiskLimits(0.5, 1.0), max_steps=3), replay_bars=with_book,
                          replay_start_ts=ohlcv["ts"][300])  # the bars that carry the column trade
    assert trader.run().steps == 3


def test_classifier_features_count_as_available_when_the_bundle_carries_the_classifier(spread_bundle):
    runs, *_ = spread_bundle
    bundle = load_live_config(runs, TRAIN_ID).bundle
    assert bundle.computed_features == ()
    names = ("ret_1", *CLASSIFIER_FEATURES)
    with pytest.raises(ConfigError, match="clf_p_sell"):
        check_live_features(names, book_feed=False, computed=bundle.computed_features)
    with_clf = dataclasses.replace(bundle, feature_names=names, classifier=object())  # asks the bundle, not a list
    assert with_clf.computed_features == CLASSIFIER_FEATURES
    assert check_live_features(names, book_feed=False, computed=with_clf.computed_features) == []


def test_testnet_with_the_book_feed_down_is_refused_at_start(spread_bundle):
    _, ohlcv, _ = spread_bundle
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens: the book feed is down
    candles = ReplayProvider(ohlcv, history_bars=10)
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match="gave no synced book within sync_timeout_s=2 s"):
        with_book_features(candles, ["ret_1", "spread_bps"], "BTCUSDT", mode="testnet",
                           ws_url=f"ws://127.0.0.1:{port}", rest_url=f"http://127.0.0.1:{port}", sync_timeout_s=2.0)
    assert time.monotonic() - t0 < 20
