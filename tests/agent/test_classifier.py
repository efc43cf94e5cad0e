"""The classifier's probabilities reach the agent: same numbers in the environment and in the live trader."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from stable_baselines3 import SAC

from quantnb.agent import (
    CLASSIFIER_FEATURES,
    AgentMetadata,
    ClassifierSignal,
    EnvSpec,
    FeatureScaler,
    compute_features,
    evaluate_agent,
    load_agent_bundle,
    make_env,
    save_agent_bundle,
)
from quantnb.agent._classifier import AgentFeatureStream
from quantnb.classifier import HybridTCNLSTM, build_features, feature_columns, save_model_bundle
from quantnb.errors import ConfigError
from quantnb.live import RiskLimits, SessionSettings, build_trader, load_live_config
from tests.agent._helpers import month_bars

SEQ_LEN, WARMUP, WINDOW, N_BARS, SPLIT = 12, 60, 3, 900, 650


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    """A model bundle as the training stage writes it: an (untrained, seeded) TCN-LSTM and its scaler."""
    torch.manual_seed(0)
    bars = month_bars().head(3_000)
    names = feature_columns(bars)
    scaler = FeatureScaler.fit(build_features(bars, names), names)
    model = HybridTCNLSTM(len(names), tcn_channels=4, n_blocks=1, lstm_hidden=8).eval()
    out = tmp_path_factory.mktemp("clf") / "model"
    save_model_bundle(out, model, scaler, {"seq_len": SEQ_LEN})
    return out


def _gappy(n: int) -> pl.DataFrame:
    bars = month_bars().head(n)
    keep = np.ones(n, dtype=bool)
    keep[300:303] = False
    return bars.filter(pl.Series(keep))


def test_probabilities_equal_batch_and_stream_and_restart_after_a_gap(classifier_dir):
    sig = ClassifierSignal.load(classifier_dir)
    bars = _gappy(700)
    batch = sig.batch(bars).select(CLASSIFIER_FEATURES).to_numpy()
    stream = sig.stream()
    got = np.array([(lambda p: np.full(3, np.nan) if p is None else p)(stream.update(r))
                    for r in bars.iter_rows(named=True)])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(batch))
    ok = ~np.isnan(batch[:, 0])
    np.testing.assert_allclose(got[ok], batch[ok], rtol=0, atol=1e-6)
    np.testing.assert_allclose(batch[ok].sum(axis=1), 1.0, atol=1e-12)
    # causal and gap-aware: the first window needs SEQ_LEN rows with log_ret_1m, i.e. from bar 1
    first = int(np.flatnonzero(ok)[0])
    assert first == SEQ_LEN  # log_ret_1m is null on bar 0
    after_gap = 300  # row 300 of the gappy frame is the first bar after the gap
    assert np.isnan(batch[after_gap : after_gap + SEQ_LEN, 0]).all() and not np.isnan(batch[after_gap + SEQ_LEN, 0])


def test_agent_with_classifier_trades_the_same_in_the_environment_and_live(classifier_dir, tmp_path):
    torch.set_num_threads(1)
    sig = ClassifierSignal.load(classifier_dir)
    bars = month_bars().head(N_BARS)
    split = bars["ts"][SPLIT]
    feats = compute_features(bars, warmup_bars=WARMUP).hstack(sig.batch(bars).drop("ts"))
    names = [c for c in feats.columns if c != "ts"]
    assert names[-3:] == list(CLASSIFIER_FEATURES)
    scaler = FeatureScaler.fit(feats.filter(pl.col("ts") < split), names, clip_sigma=5.0)
    spec = EnvSpec(window=WINDOW, fee_bps=4.0, slippage_bps=1.0, max_position_frac=1.0, deadband_frac=0.0,
                   warmup_bars=WARMUP)
    train_env = make_env(bars, spec, scaler, feats, end_ts=split, max_episode_steps=100, random_start=True)
    model = SAC("MlpPolicy", train_env, buffer_size=500, learning_starts=50, batch_size=32, seed=0, device="cpu",
                policy_kwargs={"net_arch": [16]}, verbose=0)
    model.learn(80)
    ev = evaluate_agent(model, make_env(bars, spec, scaler, feats, start_ts=split))
    runs = tmp_path / "runs"
    meta = AgentMetadata(window=WINDOW, fee_bps=4.0, slippage_bps=1.0, max_position_frac=1.0, deadband_frac=0.0,
                         warmup_bars=WARMUP, symbol="BTC-PERP", timeframe="1m",
                         classifier={"train_id": "training_x", "seq_len": SEQ_LEN})
    with pytest.raises(ConfigError, match="classifier_dir"):
        save_agent_bundle(runs / "agent_clf", model, scaler, meta)
    save_agent_bundle(runs / "agent_clf", model, scaler, meta, classifier_dir=classifier_dir)
    bundle = load_agent_bundle(runs / "agent_clf")
    assert bundle.classifier is not None and isinstance(bundle.new_feature_stream(), AgentFeatureStream)
    steps = []
    cfg = load_live_config(runs, "agent_clf")
    build_trader(cfg, SessionSettings(mode="replay", limits=RiskLimits(0.9, 1.0)), replay_bars=bars,
                 replay_start_ts=split, on_step=steps.append).run()
    n = len(ev.actions)
    live_obs = np.stack([s.observation for s in steps[:n]])
    # the classifier's columns of every window row: environment (batch) and live (bar by bar) agree
    n_f = len(names)
    clf_cols = [r * n_f + n_f - 3 + j for r in range(WINDOW) for j in range(3)]
    np.testing.assert_allclose(live_obs[:, clf_cols], ev.observations[:, clf_cols], rtol=0, atol=1e-5)
    np.testing.assert_allclose(live_obs, ev.observations, rtol=0, atol=1e-5)
    np.testing.assert_allclose([s.action_raw for s in steps[:n]], ev.actions, rtol=0, atol=1e-4)


def _counting(sig: ClassifierSignal) -> list[int]:
    """Windows the classifier's network evaluates, per call (a forward hook on the model)."""
    calls: list[int] = []
    sig.model.register_forward_hook(lambda mod, args, out: calls.append(int(args[0].shape[0])))
    return calls


def test_deferred_warm_up_equals_bar_by_bar_and_runs_the_network_only_for_the_window(classifier_dir):
    """push() over a long history, then one window: the same rows as update() bar by bar, one small batch."""
    bars = _gappy(900)
    vol = bars["volume"].to_list()
    vol[840] = None  # an unusable classifier row: its windows end the rows before it, as in the environment
    bars = bars.with_columns(pl.Series("volume", vol, dtype=pl.Float64))
    names = ["ret_1", "rsi_14", "macd_hist", *CLASSIFIER_FEATURES]
    sig_a, sig_b = ClassifierSignal.load(classifier_dir), ClassifierSignal.load(classifier_dir)
    a = AgentFeatureStream(names, window=WINDOW, warmup_bars=WARMUP, classifier=sig_a)
    b = AgentFeatureStream(names, window=WINDOW, warmup_bars=WARMUP, classifier=sig_b)
    calls = _counting(sig_b)
    rows = list(bars.iter_rows(named=True))
    tail = 830  # from here on, b asks for the window after every bar (as the trader does when trading)
    for r in rows[:tail]:
        a.update(r)
        b.push(r)
    assert calls == [], "nothing ran before a window was asked for"
    np.testing.assert_allclose(b.window_array(), a.window_array(), rtol=0, atol=1e-6)
    assert calls == [WINDOW], "the warm-up evaluated only the windows the observation reads, in one batch"
    ready = []
    for r in rows[tail:]:
        a.update(r)
        b.push(r)
        wa, wb = a.window_array(), b.window_array()
        assert (wa is None) == (wb is None)
        ready.append(wb is not None)
        if wa is not None:
            np.testing.assert_allclose(wb, wa, rtol=0, atol=1e-6)
    assert not all(ready) and any(ready), "the NaN volume made some windows incomplete, later ones complete"
    assert sum(calls) <= WINDOW + len(rows) - tail


def test_deferred_warm_up_ends_as_one_bar_at_a_time_after_a_gap_or_bad_row_near_the_end(classifier_dir):
    """The bounded history the classifier's features are rebuilt from gives the same last window."""
    sig = ClassifierSignal.load(classifier_dir)
    names = ["ret_1", "macd_line", *CLASSIFIER_FEATURES]
    base = month_bars().head(1_000)
    for cut in (975, 985, 990, 995):  # a missing stretch of bars, then history to the end
        keep = np.ones(base.height, dtype=bool)
        keep[cut : cut + 2] = False
        bars = base.filter(pl.Series(keep)).with_columns(
            pl.when(pl.int_range(pl.len()) == cut - 30).then(None).otherwise(pl.col("volume")).alias("volume"))
        a = AgentFeatureStream(names, window=WINDOW, warmup_bars=WARMUP, classifier=sig)
        b = AgentFeatureStream(names, window=WINDOW, warmup_bars=WARMUP, classifier=sig)
        for r in bars.iter_rows(named=True):
            a.update(r)
            b.push(r)
        wa, wb = a.window_array(), b.window_array()
        assert (wa is None) == (wb is None)
        if wa is not None:
            np.testing.assert_allclose(wb, wa, rtol=0, atol=1e-6)


def test_deferred_warm_up_with_forward_filled_book_features_equals_bar_by_bar(tmp_path):
    """A classifier on book columns (forward-filled, so every bar counts): its engine sees each bar, the net waits."""
    torch.manual_seed(1)
    bars = month_bars().head(800)
    mid = bars["close"].to_list()
    for i in range(0, 800, 37):
        mid[i] = None  # a minute without a book update: carried forward, in batch and bar by bar
    bars = bars.with_columns(pl.Series("mid_close", mid, dtype=pl.Float64), spread_bps_mean=pl.lit(0.5))
    names = ["log_ret_1m", "log_ret_mid_1m", "spread_bps"]
    clf_dir = tmp_path / "model"
    save_model_bundle(clf_dir, HybridTCNLSTM(len(names), tcn_channels=4, n_blocks=1, lstm_hidden=8).eval(),
                      FeatureScaler.fit(build_features(bars, names), names), {"seq_len": SEQ_LEN})
    sig = ClassifierSignal.load(clf_dir)
    calls = _counting(sig)
    feats = ["ret_1", "rsi_14", *CLASSIFIER_FEATURES]
    a = AgentFeatureStream(feats, window=WINDOW, warmup_bars=WARMUP, classifier=sig)
    b = AgentFeatureStream(feats, window=WINDOW, warmup_bars=WARMUP, classifier=sig)
    rows = list(bars.iter_rows(named=True))
    for r in rows[:700]:
        a.update(r)
    n_a = sum(calls)
    for r in rows[:700]:
        b.push(r)
    np.testing.assert_allclose(b.window_array(), a.window_array(), rtol=0, atol=1e-6)
    assert sum(calls) - n_a == WINDOW
    for r in rows[700:]:
        a.update(r)
        b.push(r)
        np.testing.assert_allclose(b.window_array(), a.window_array(), rtol=0, atol=1e-6)
    batch = sig.batch(bars).select(CLASSIFIER_FEATURES).to_numpy()[-WINDOW:]
    np.testing.assert_allclose(b.window_array()[:, -3:], batch, rtol=0, atol=1e-6)
