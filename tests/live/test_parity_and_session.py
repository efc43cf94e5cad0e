from __future__ import annotations

import csv
import datetime as dt

import numpy as np
import pytest
import torch
from stable_baselines3 import SAC

from quantnb.agent import (
    AgentMetadata,
    EnvSpec,
    FeatureScaler,
    compute_features,
    evaluate_agent,
    make_env,
    save_agent_bundle,
)
from quantnb.errors import ConfigError
from quantnb.live import RiskLimits, SessionSettings, build_trader, load_live_config, run_with_restarts
from quantnb.live._inference import deterministic_policy
from tests.live._helpers import sample_bars

WARMUP, WINDOW, N_BARS, TRAIN_ID = 60, 4, 700, "agent_test_20240101_000000"


@pytest.fixture(scope="module")
def bundle_setup(tmp_path_factory):
    """A real agent bundle: SAC trained briefly on the first 500 real bars, held-out period after them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: intra-op threads only contend on a 2-core machine
    runs = tmp_path_factory.mktemp("runs")
    bars = sample_bars(N_BARS)
    split = bars["ts"][500]
    feats = compute_features(bars, warmup_bars=WARMUP)
    names = [c for c in feats.columns if c != "ts"]
    scaler = FeatureScaler.fit(feats.filter(feats["ts"] < split), names)
    spec = EnvSpec(window=WINDOW, fee_bps=4.0, slippage_bps=1.0, max_position_frac=1.0, deadband_frac=0.02,
                   warmup_bars=WARMUP, initial_equity_usd=10_000.0)  # the stage's path: make_env of an EnvSpec
    train_env = make_env(bars, spec, scaler, feats, end_ts=split, max_episode_steps=100, random_start=True)
    model = SAC("MlpPolicy", train_env, buffer_size=1_000, learning_starts=50, batch_size=32, seed=0, device="cpu",
                policy_kwargs={"net_arch": [32, 32]}, verbose=0)
    model.learn(150)
    save_agent_bundle(runs / TRAIN_ID, model, scaler, AgentMetadata(env=spec, symbol="BTC-PERP", timeframe="1m"))
    evaluation = evaluate_agent(model, make_env(bars, spec, scaler, feats, start_ts=split))
    yield runs, bars, split, evaluation
    torch.set_num_threads(threads)


def test_replay_session_observations_and_actions_equal_the_evaluation(bundle_setup, tmp_path):
    runs, bars, split, ev = bundle_setup
    cfg = load_live_config(runs, TRAIN_ID)
    steps = []
    trader = build_trader(cfg, SessionSettings(mode="replay", limits=RiskLimits(0.9, 1.0)), replay_bars=bars,
                          replay_start_ts=split, on_step=steps.append)
    stats = trader.run()
    n = len(ev.actions)  # the evaluation decides on every bar but the last
    assert n == N_BARS - 500 - 1 and stats.steps == n + 1
    assert [s.bar.open_time_ms for s in steps[:n]] == [int(t.timestamp() * 1000) for t in ev.bar_ts[:-1]]
    live_obs = np.stack([s.observation for s in steps[:n]])
    np.testing.assert_allclose(live_obs, ev.observations, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(np.array([s.action_raw for s in steps[:n]], dtype=np.float32), ev.actions)
    np.testing.assert_array_equal([s.target_frac for s in steps[:n]], ev.target_fracs)
    live_trades = sum(1 for s in steps[:n] if s.fill is not None)
    assert live_trades == ev.agent.n_trades > 0
    # the paper account after each fill, re-marked at the next close, is the evaluation's equity curve
    marked = [s.account.equity_usd + s.account.position_qty * (nxt.bar.close - s.bar.close)
              for s, nxt in zip(steps[:n], steps[1 : n + 1], strict=True)]
    np.testing.assert_allclose(marked, ev.equity_usd[1:], rtol=1e-12)
    with open(stats.registro_path, newline="") as fh:
        assert len(list(csv.DictReader(fh))) == stats.steps


def test_fast_inference_is_bit_identical_to_predict(bundle_setup):
    runs, *_ = bundle_setup
    model = load_live_config(runs, TRAIN_ID).bundle.model
    policy = deterministic_policy(model)
    assert policy.__name__ == "fast"
    rng = np.random.default_rng(3)
    for obs in rng.normal(0, 3, size=(300, model.observation_space.shape[0])).astype(np.float32):
        np.testing.assert_array_equal(policy(obs), model.predict(obs, deterministic=True)[0])


def test_small_drawdown_limit_triggers_emergency_in_replay(bundle_setup, tmp_path):
    runs, bars, split, _ = bundle_setup
    cfg = load_live_config(runs, TRAIN_ID)
    stats = build_trader(cfg, SessionSettings(limits=RiskLimits(0.0005, 1.0)), replay_bars=bars,
                         replay_start_ts=split).run()
    assert stats.stopped_by == "emergency:drawdown" and stats.emergency.flat_confirmed
    assert stats.emergencias_path.exists() and (cfg.out_dir / "HALTED_DRAWDOWN").exists()
    with pytest.raises(ConfigError, match="HALTED_DRAWDOWN"):
        build_trader(cfg, SessionSettings(limits=RiskLimits(0.2, 1.0)), replay_bars=bars)
    (cfg.out_dir / "HALTED_DRAWDOWN").unlink()
    assert run_with_restarts(lambda: build_trader(cfg, SessionSettings(limits=RiskLimits(0.5, 1.0), max_steps=5),
                                                  replay_bars=bars, replay_start_ts=split))[0].steps == 5


def test_live_mode_without_confirmation_is_refused_before_any_connection(bundle_setup, monkeypatch):
    runs, bars, *_ = bundle_setup
    monkeypatch.setenv("QUANTNB_BINANCE_API_KEY", "k" * 32)
    monkeypatch.setenv("QUANTNB_BINANCE_API_SECRET", "s" * 48)
    cfg = load_live_config(runs, TRAIN_ID)
    with pytest.raises(ConfigError, match="confirm_live=True"):  # refused by the settings, before build_trader
        build_trader(cfg, SessionSettings(mode="live", symbol="BTCUSDT", limits=RiskLimits(0.1, 1.0),
                                          rest_base_url="http://127.0.0.1:9"))  # nothing listens there


def test_bundle_problems_are_config_errors_naming_the_file(bundle_setup, tmp_path):
    runs, *_ = bundle_setup
    with pytest.raises(ConfigError, match="agent bundle directory not found"):
        load_live_config(runs, "agent_missing_1")
    with pytest.raises(ConfigError, match="train_id"):
        load_live_config(runs, "../etc")
    with pytest.raises(ConfigError, match="trained on '1m'"):
        load_live_config(runs, TRAIN_ID, timeframe="5m")
    broken = tmp_path / "runs" / "agent_broken"
    broken.mkdir(parents=True)
    (broken / "config_metadata.yaml").write_text((runs / TRAIN_ID / "config_metadata.yaml").read_text())
    (broken / "scaler.json").write_text((runs / TRAIN_ID / "scaler.json").read_text())
    with pytest.raises(ConfigError, match="sac_model.zip"):
        load_live_config(tmp_path / "runs", "agent_broken")


def test_replay_needs_enough_history(bundle_setup):
    runs, bars, *_ = bundle_setup
    cfg = load_live_config(runs, TRAIN_ID)
    with pytest.raises(ConfigError, match="bars of history"):
        build_trader(cfg, SessionSettings(limits=RiskLimits(0.2, 1.0)), replay_bars=bars,
                     replay_start_ts=bars["ts"][10])
    with pytest.raises(ConfigError, match="after the last bar"):
        build_trader(cfg, SessionSettings(limits=RiskLimits(0.2, 1.0)), replay_bars=bars,
                     replay_start_ts=bars["ts"][-1] + dt.timedelta(days=1))


def test_testnet_session_streams_klines_and_trades_on_the_exchange(bundle_setup, server, fake_keys):
    """The whole testnet path on loopback: REST history, websocket candles, orders, registro."""
    from quantnb.testing.ws_server import KlineStreamServer

    runs, bars, *_ = bundle_setup
    rows = [(int(t.timestamp() * 1000), o, h, lo, c, v) for t, o, h, lo, c, v in bars.head(100).iter_rows()]
    server.set_klines("BTCUSDT", "1m", rows, 60_000)
    server.set_now_ms(rows[69][0] + 60_000)  # 70 candles closed: the warm-up needs 63
    server.set_price("BTCUSDT", rows[69][4])

    def on_closed(open_ms):
        i = (open_ms - rows[0][0]) // 60_000
        server.set_price("BTCUSDT", rows[i][4])
        server.set_now_ms(open_ms + 60_000)

    with KlineStreamServer(rows[70:], message_delay_s=0.002, on_closed=on_closed) as ws:
        cfg = load_live_config(runs, TRAIN_ID)
        steps = []
        trader = build_trader(cfg, SessionSettings(mode="testnet", symbol="BTC-PERP", limits=RiskLimits(0.5, 1.0),
                                                   rest_base_url=server.base_url, ws_url=ws.url, max_steps=25),
                              on_step=steps.append)
        stats = trader.run()
    assert stats.stopped_by == "max_steps" and stats.steps == 25
    assert [s.bar.open_time_ms for s in steps] == [r[0] for r in rows[70:95]]
    assert all(s.bar.source in ("ws", "rest") and s.observation is not None for s in steps)
    fills = [s.fill for s in steps if s.fill is not None]
    assert len(fills) == stats.trades > 0 and all(f.status == "FILLED" for f in fills)
    assert sum(f.qty for f in fills) == pytest.approx(server.position_amt(), abs=1e-9)
    with open(stats.registro_path, newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 25
