"""The agent with the classifier in the live trader: a replay that starts quickly, and testnet on loopback."""

from __future__ import annotations

import csv
import shutil
import statistics
import time

import numpy as np
import polars as pl
import pytest
import torch
from stable_baselines3 import SAC

from quantnb.agent import (
    CLASSIFIER_FEATURES,
    ActionInterpreter,
    AgentMetadata,
    ClassifierSignal,
    FeatureScaler,
    FillModel,
    ObservationBuilder,
    TradingEnv,
    compute_features,
    save_agent_bundle,
)
from quantnb.classifier import HybridTCNLSTM, build_features, feature_columns, save_model_bundle
from quantnb.live import RiskLimits, SessionSettings, build_trader, load_live_config
from tests.conftest import make_project
from tests.live._helpers import sample_bars

WARMUP, WINDOW, SEQ_LEN, HISTORY = 60, 4, 16, 4_000
PLAIN, CLF = "agent_plain_20240101_000000", "agent_clf_20240101_000000"


@pytest.fixture(scope="module")
def agents(tmp_path_factory):
    """Two real SAC bundles on the same market features (untrained weights), the second with a TCN-LSTM's P(class)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    runs = tmp_path_factory.mktemp("runs")
    bars = sample_bars(HISTORY + 200)
    names = feature_columns(bars)
    clf_dir = runs / "training_x" / "model"
    save_model_bundle(clf_dir, HybridTCNLSTM(len(names), tcn_channels=8, n_blocks=2, lstm_hidden=16).eval(),
                      FeatureScaler.fit(build_features(bars.head(2_000), names), names), {"seq_len": SEQ_LEN})
    sig = ClassifierSignal.load(clf_dir)
    market = compute_features(bars, warmup_bars=WARMUP)
    for train_id, feats in ((PLAIN, market), (CLF, market.hstack(sig.batch(bars).drop("ts")))):
        cols = [c for c in feats.columns if c != "ts"]
        scaler = FeatureScaler.fit(feats.head(2_000), cols)
        env = TradingEnv(bars, observation_builder=ObservationBuilder(cols, WINDOW, scaler),
                         action_interpreter=ActionInterpreter(1.0, 0.0), fill_model=FillModel(4.0, 1.0),
                         features=feats, initial_equity_usd=10_000.0, warmup_bars=WARMUP, max_episode_steps=50)
        model = SAC("MlpPolicy", env, buffer_size=100, seed=0, device="cpu", policy_kwargs={"net_arch": [16]},
                    verbose=0)
        clf = train_id == CLF
        meta = AgentMetadata(window=WINDOW, fee_bps=4.0, slippage_bps=1.0, max_position_frac=1.0, deadband_frac=0.0,
                             warmup_bars=WARMUP, initial_equity_usd=10_000.0, symbol="BTC-PERP", timeframe="1m",
                             classifier={"train_id": "training_x", "seq_len": SEQ_LEN} if clf else {})
        save_agent_bundle(runs / train_id, model, scaler, meta, classifier_dir=clf_dir if clf else None)
    yield runs, bars
    torch.set_num_threads(threads)


def _first_decision_s(runs, train_id, bars, windows=None, warmup=None):
    """Seconds from ``run()`` to the end of the first decided bar after HISTORY bars of warm-up."""
    cfg = load_live_config(runs, train_id)
    if windows is not None:  # windows the classifier's network evaluates
        cfg.bundle.classifier.model.register_forward_hook(lambda m, a, out: windows.append(int(a[0].shape[0])))
    kw = {} if warmup is None else {"on_warmup": warmup}
    trader = build_trader(cfg, SessionSettings(limits=RiskLimits(0.9, 1.0), max_steps=1, fresh_start=True),
                          replay_bars=bars, replay_start_ts=bars["ts"][HISTORY], **kw)
    t0 = time.perf_counter()
    stats = trader.run()
    elapsed = time.perf_counter() - t0
    assert stats.steps == 1 and stats.emergency is None
    return elapsed


def test_classifier_agent_replay_reaches_its_first_decision_within_1_5x_the_plain_agent(agents):
    runs, bars = agents
    plain, clf = [], []
    for _ in range(3):  # interleaved: a load change on the shared machine hits both alike
        plain.append(_first_decision_s(runs, PLAIN, bars))
        clf.append(_first_decision_s(runs, CLF, bars))
    assert statistics.median(clf) <= 1.5 * statistics.median(plain), (clf, plain)
    windows, reports = [], []
    _first_decision_s(runs, CLF, bars, windows, lambda done, total: reports.append((done, total)))
    # the warm-up runs the network on the windows the first observation reads, once, then one per decided bar
    assert sum(windows) <= WINDOW + 1 and len(windows) <= 2, windows
    assert reports and reports[-1] == (HISTORY, HISTORY) and all(t == HISTORY for _, t in reports)
    assert load_live_config(runs, CLF).bundle.computed_features == CLASSIFIER_FEATURES
    assert load_live_config(runs, PLAIN).bundle.computed_features == ()


@pytest.mark.slow
def test_testnet_classifier_agent_on_loopback_sees_the_replays_observations(agents, server, fake_keys):
    """REST history and websocket candles from the loopback exchange: the same observations as a replay."""
    from quantnb.testing.ws_server import KlineStreamServer

    runs, bars = agents
    rows = [(int(t.timestamp() * 1000), o, h, lo, c, v) for t, o, h, lo, c, v in bars.head(120).iter_rows()]
    server.set_klines("BTCUSDT", "1m", rows, 60_000)
    server.set_now_ms(rows[79][0] + 60_000)  # 80 candles closed; the feed downloads the warm-up's 63
    server.set_price("BTCUSDT", rows[79][4])

    def on_closed(open_ms):
        i = (open_ms - rows[0][0]) // 60_000
        server.set_price("BTCUSDT", rows[i][4])
        server.set_now_ms(open_ms + 60_000)

    n_live = 30
    with KlineStreamServer(rows[80:], message_delay_s=0.002, on_closed=on_closed) as ws:
        cfg = load_live_config(runs, CLF)
        live = []
        stats = build_trader(cfg, SessionSettings(mode="testnet", symbol="BTC-PERP", limits=RiskLimits(0.9, 1.0),
                                                  rest_base_url=server.base_url, ws_url=ws.url, max_steps=n_live),
                             on_step=live.append).run()
    assert stats.stopped_by == "max_steps" and stats.steps == n_live and stats.emergency is None
    assert [s.bar.open_time_ms for s in live] == [r[0] for r in rows[80 : 80 + n_live]]
    assert all(s.observation is not None for s in live)
    # a replay of the same candles: the history the testnet feed downloaded, then the same traded bars
    history = WARMUP + WINDOW - 1
    same = bars.slice(80 - history, history + n_live)
    replayed = []
    build_trader(load_live_config(runs, CLF), SessionSettings(limits=RiskLimits(0.9, 1.0), fresh_start=True),
                 replay_bars=same, replay_start_ts=same["ts"][history], on_step=replayed.append).run()
    assert [s.bar.open_time_ms for s in replayed[:n_live]] == [s.bar.open_time_ms for s in live]
    n_market = WINDOW * len(cfg.bundle.feature_names)  # the portfolio's 3 values follow (accounts differ)
    live_obs = np.stack([s.observation[:n_market] for s in live])
    replay_obs = np.stack([s.observation[:n_market] for s in replayed[:n_live]])
    # float32 network: windows evaluated in batches of other sizes differ in the last bits (probabilities agree
    # to 1e-6, see tests/agent/test_classifier.py); the scaler's 1/std enlarges that in the observation
    np.testing.assert_allclose(live_obs, replay_obs, rtol=0, atol=1e-5)
    clf_cols = [r * len(cfg.bundle.feature_names) + len(cfg.bundle.feature_names) - 3 + j
                for r in range(WINDOW) for j in range(3)]
    assert np.ptp(live_obs[:, clf_cols], axis=0).max() > 0, "the classifier's columns move with the candles"
    with open(stats.registro_path, newline="") as fh:
        assert len(list(csv.DictReader(fh))) == n_live
    assert pl.read_csv(stats.registro_path).height == n_live


def test_live_stage_shows_the_warm_up_with_its_total_and_infers_on_one_thread(agents, tmp_path):
    """The notebook's progress message counts the history bars against their total; torch runs one thread."""
    from quantnb.runs._progress import add_progress_listener
    from quantnb.stages.live import LiveParams, run_live

    runs, bars = agents
    root = make_project(tmp_path / "proj")
    shutil.copytree(runs / CLF, root / "runs" / CLF)
    out = root / "data" / "processed" / "unknown" / "perp" / "BTC-PERP"
    out.mkdir(parents=True)
    bars.write_parquet(out / "2022-01-01.parquet")
    seen = []
    remove = add_progress_listener(lambda ev: seen.append((ev.kind, ev.message, torch.get_num_threads())))
    torch.set_num_threads(2)
    try:
        result = run_live(LiveParams.parse({"project_dir": str(root), "train_id": CLF, "max_steps": 3,
                                            "replay_start": bars["ts"][HISTORY].isoformat(), "console_level": None}))
        assert torch.get_num_threads() == 2, "the session's setting is undone after it"
    finally:
        remove()
        torch.set_num_threads(1)
    assert result.stats.steps == 3
    warm = [m for k, m, _ in seen if m.startswith("warm-up")]
    assert warm and warm[-1] == f"warm-up {HISTORY:,}/{HISTORY:,} bars of history", warm
    assert {n for k, _, n in seen if k == "item"} == {1}, "decisions ran on one torch thread"
