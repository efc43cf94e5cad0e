"""The trader's live book feed: candles carry the ETL's book features; bundles it cannot serve are refused."""

from __future__ import annotations

import math

import polars as pl
import pytest

from quantnb.data import ingest_file, merge_parts
from quantnb.errors import ConfigError
from quantnb.live import ReplayProvider
from quantnb.live._book_feed import BOOK_COLUMNS, BookFeatureProvider, check_live_features, with_book_features
from quantnb.testing.binance_stream_server import SAMPLE_CAPTURE, BinanceStreamServer


def test_bundles_needing_features_the_feed_cannot_give_are_refused_naming_them():
    with pytest.raises(ConfigError, match="imbalance_10"):
        check_live_features(["ret_1", "imbalance_10", "rsi_14"], book_feed=False)
    with pytest.raises(ConfigError, match="funding_rate"):
        check_live_features(["ret_1", "funding_rate"], book_feed=True)
    assert check_live_features(["ret_1", "micro_dev_bps"], book_feed=True) == ["micro_dev_bps"]
    sentinel = object()
    assert with_book_features(sentinel, ["ret_1", "rsi_14"], "BTCUSDT") is sentinel  # klines suffice: unchanged


def test_candles_carry_the_live_book_features_the_etl_computes(tmp_path):
    merged = merge_parts([ingest_file(SAMPLE_CAPTURE).bars])
    etl = pl.concat([merged[k] for k in sorted(merged)])
    candles = etl.select("ts", "open", "high", "low", "close", "volume")  # klines: no book columns
    with BinanceStreamServer(message_delay_s=0.0) as srv:
        feed = BookFeatureProvider(ReplayProvider(candles, history_bars=1), "BTC/USDT:USDT", ws_url=srv.ws_url,
                                   rest_url=srv.rest_url, book_wait_s=1.0)
        try:
            assert srv.done.wait(60), "the loopback stream did not finish"
            bars = []
            while not feed.finished:
                bar = feed.next_bar(5.0)
                if bar is not None:
                    bars.append(bar)
        finally:
            feed.close()
    assert [b.open_time_ms for b in bars] == candles["ts"].dt.epoch("ms").to_list()[1:]
    # the first minute is partly before the live book synced; every later minute is the ETL's to the bit
    for bar, row in zip(bars[1:], list(etl.iter_rows(named=True))[2:], strict=True):
        assert bar.extras is not None
        for col in BOOK_COLUMNS:
            want, got = row[col], bar.extras[col]
            assert got == want or (math.isnan(got) and math.isnan(want)), (bar.open_time_ms, col, got, want)
    assert feed.recorder.counters.total("gaps") == 0
