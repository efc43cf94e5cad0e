"""A testnet session on loopback whose agent uses order-book features: the live book feeds them end to end."""

from __future__ import annotations

import csv

import polars as pl
import pytest
import torch
from stable_baselines3 import SAC

from quantnb.agent import (
    ActionInterpreter,
    AgentMetadata,
    FeatureScaler,
    FillModel,
    ObservationBuilder,
    TradingEnv,
    compute_features,
    save_agent_bundle,
)
from quantnb.data import ingest_file, merge_parts
from quantnb.live import RiskLimits, SessionSettings, build_trader, load_live_config
from quantnb.testing.binance_server import BinanceLoopbackServer
from quantnb.testing.binance_stream_server import SAMPLE_CAPTURE, BinanceStreamServer
from quantnb.testing.ws_server import KlineStreamServer
from tests.live._helpers import sample_bars

pytestmark = pytest.mark.slow
WARMUP, WINDOW, TRAIN_ID = 60, 4, "agent_book_20240101_000000"
BOOK = ("mid_close", "micro_price_close", "spread_bps_mean", "bid_depth_10", "ask_depth_10", "imbalance_10")


def _bundle(runs):
    """A real SAC bundle whose features include two order-book features (untrained weights suffice)."""
    bars = sample_bars(300)
    mid = bars["close"]
    bars = bars.with_columns(mid_close=mid, micro_price_close=mid * 1.00001, spread_bps_mean=pl.lit(0.02),
                             bid_depth_10=pl.lit(5.0), ask_depth_10=pl.lit(4.0), imbalance_10=pl.lit(0.1))
    names = ["ret_1", "ret_5", "rsi_14", "macd_hist", "imbalance_10", "micro_dev_bps"]
    feats = compute_features(bars, names, warmup_bars=WARMUP)
    scaler = FeatureScaler.fit(feats, names)
    env = TradingEnv(bars, observation_builder=ObservationBuilder(names, WINDOW, scaler),
                     action_interpreter=ActionInterpreter(1.0, 0.0), fill_model=FillModel(4.0, 1.0), features=feats,
                     initial_equity_usd=10_000.0, warmup_bars=WARMUP, max_episode_steps=50)
    model = SAC("MlpPolicy", env, buffer_size=100, learning_starts=10, seed=0, device="cpu",
                policy_kwargs={"net_arch": [16]}, verbose=0)
    meta = AgentMetadata(window=WINDOW, fee_bps=4.0, slippage_bps=1.0, max_position_frac=1.0, deadband_frac=0.0,
                         warmup_bars=WARMUP, initial_equity_usd=10_000.0, symbol="BTC-PERP", timeframe="1m")
    save_agent_bundle(runs / TRAIN_ID, model, scaler, meta)
    return names


def test_testnet_session_with_a_book_feature_agent_runs_on_the_live_book(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    runs = tmp_path / "runs"
    names = _bundle(runs)
    monkeypatch.setenv("QUANTNB_BINANCE_TESTNET_API_KEY", "qnbKEYbook0123456789")
    monkeypatch.setenv("QUANTNB_BINANCE_TESTNET_API_SECRET", "qnbSECRETbook0123456789")
    merged = merge_parts([ingest_file(SAMPLE_CAPTURE).bars])
    etl = pl.concat([merged[k] for k in sorted(merged)]).filter(pl.col("volume").is_not_null())  # 23:54..23:59
    live_rows = [(int(t.timestamp() * 1000), o, h, lo, c, v)
                 for t, o, h, lo, c, v in etl.select("ts", "open", "high", "low", "close", "volume").iter_rows()]
    t0 = live_rows[0][0]
    hist = [(t0 - (70 - i) * 60_000, *r[1:]) for i, r in enumerate(
        sample_bars(70).select("ts", "open", "high", "low", "close", "volume").iter_rows())]
    rows = hist + live_rows
    rest = BinanceLoopbackServer(balance_usd=10_000.0, prices={"BTCUSDT": live_rows[0][4]}).start()
    try:
        rest.set_klines("BTCUSDT", "1m", rows, 60_000)
        rest.set_now_ms(t0)  # the history is closed; the live candles come from the stream

        def on_closed(open_ms):
            i = (open_ms - rows[0][0]) // 60_000
            rest.set_price("BTCUSDT", rows[i][4])
            rest.set_now_ms(open_ms + 60_000)

        with BinanceStreamServer() as book_srv, KlineStreamServer(live_rows, message_delay_s=0.3,
                                                                  on_closed=on_closed) as ws:
            monkeypatch.setenv("QUANTNB_BOOK_WS_URL", book_srv.ws_url)
            monkeypatch.setenv("QUANTNB_BOOK_REST_URL", book_srv.rest_url)
            cfg = load_live_config(runs, TRAIN_ID)
            assert set(cfg.bundle.metadata.feature_names) == set(names)
            steps = []
            settings = SessionSettings(mode="testnet", symbol="BTC-PERP", limits=RiskLimits(0.9, 1.0),
                                       rest_base_url=rest.base_url, ws_url=ws.url, max_steps=len(live_rows))
            trader = build_trader(cfg, settings, on_step=steps.append)
            stats = trader.run()
    finally:
        rest.stop()
    assert stats.steps == len(live_rows) and stats.emergency is None
    assert [s.bar.open_time_ms for s in steps] == [r[0] for r in live_rows]
    for s in steps:
        assert set(BOOK) <= set(s.bar.extras or {})
    fed = [s for s in steps if s.bar.extras["imbalance_10"] is not None]
    assert len(fed) >= len(live_rows) - 1, "every candle after the book synced carries its minute's book"
    last = etl.row(-1, named=True)
    assert steps[-1].bar.extras["imbalance_10"] == last["imbalance_10"]
    # the features start with the first book seen; the observation needs WINDOW rows of them
    assert fed[WINDOW - 1:] and all(s.observation is not None for s in fed[WINDOW - 1:])
    assert all(s.observation is None for s in steps if s.bar.extras["imbalance_10"] is None)
    with open(stats.registro_path, newline="") as fh:
        assert len(list(csv.DictReader(fh))) == len(live_rows)
