from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from quantnb.agent import (
    EnvSpec,
    FeatureScaler,
    IncrementalFeatures,
    PortfolioState,
    TradingEnv,
    compute_features,
    evaluate_agent,
    make_env,
)
from tests.agent._helpers import month_bars

WARMUP, WINDOW = 100, 4


def _gappy_bars() -> pl.DataFrame:
    bars = month_bars().head(2_400)
    keep = np.ones(bars.height, dtype=bool)
    keep[700:702] = False  # a 3-minute step
    keep[1_300:1_301] = False  # a 2-minute step: the smallest gap
    keep[1_800:1_950] = False  # a long outage
    return bars.filter(pl.Series(keep))


def _env(bars: pl.DataFrame, **kw) -> TradingEnv:
    feats = compute_features(bars, warmup_bars=WARMUP)
    names = [c for c in feats.columns if c != "ts"]
    scaler = FeatureScaler.fit(feats, names, clip_sigma=5.0)
    spec = EnvSpec(window=WINDOW, fee_bps=4.0, slippage_bps=1.0, max_position_frac=1.0, deadband_frac=0.0,
                   warmup_bars=WARMUP)
    return make_env(bars, spec, scaler, feats, **kw)


class _Flip:
    def __init__(self) -> None:
        self.n = 0

    def predict(self, obs, deterministic=True):
        self.n += 1
        return np.array([1.0 if self.n % 3 else -1.0], dtype=np.float32), None


def _spans_gap(ts: list[dt.datetime]) -> bool:
    return any(b - a >= dt.timedelta(minutes=2) for a, b in zip(ts, ts[1:], strict=False))


def test_environment_never_yields_an_observation_spanning_a_gap_and_matches_the_live_stream():
    bars = _gappy_bars()
    ts = bars["ts"].to_list()
    env = _env(bars)
    index = {t: i for i, t in enumerate(ts)}
    ev = evaluate_agent(_Flip(), env)
    # every decision bar: its window and its next bar lie in one segment
    for t in ev.bar_ts[:-1]:
        i = index[t]
        assert not _spans_gap(ts[i - WINDOW + 1 : i + 2]), t
    # the evaluation resumed after each gap once the features were warm again
    starts = [i for i in range(1, len(ts)) if ts[i] - ts[i - 1] >= dt.timedelta(minutes=2)]
    assert len(starts) == 3
    decided = {index[t] for t in ev.bar_ts[:-1]}
    for s in starts:
        assert min(d for d in decided if d >= s) == s + WARMUP - 1 + WINDOW - 1
        assert not any(s - 1 <= d < s + WARMUP + WINDOW - 2 for d in decided)
    # the live stream, fed the same bars one by one, gives the same observations across the gaps
    stream = IncrementalFeatures(env.builder.feature_names, window=WINDOW, warmup_bars=WARMUP)
    k = 0
    for i, bar in enumerate(bars.iter_rows(named=True)):
        stream.update(bar)
        if k < len(ev.observations) and index[ev.bar_ts[k]] == i:
            win = stream.window_array()
            assert win is not None, ts[i]
            state = PortfolioState(*ev.observations[k][-3:].astype(np.float64))
            live = env.builder.build(win, state)
            np.testing.assert_allclose(live[:-3], ev.observations[k][:-3], rtol=0, atol=1e-6)
            k += 1
    assert k == len(ev.observations) == env.n_period_steps


def test_training_episodes_stop_before_a_gap():
    bars = _gappy_bars()
    ts = bars["ts"].to_list()
    env = _env(bars, max_episode_steps=300, random_start=True)
    for seed in range(25):
        env.reset(seed=seed)
        seen = [env._info(None, None)["bar_ts"]]
        done = False
        while not done:
            _, _, term, trunc, info = env.step(np.array([0.5], dtype=np.float32))
            seen.append(info["bar_ts"])
            done = term or trunc
        i0 = ts.index(seen[0])
        assert not _spans_gap(ts[i0 - WINDOW + 1 : ts.index(seen[-1]) + 1])
