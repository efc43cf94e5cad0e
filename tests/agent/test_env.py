from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from quantnb.agent import IncrementalFeatures
from quantnb.errors import ConfigError
from tests.agent._helpers import WARMUP, WINDOW, make_env, small_bars


def test_env_passes_gymnasium_and_sb3_checkers_without_warnings():
    env = make_env(max_episode_steps=50, random_start=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=True)
    messages = [str(w.message) for w in caught if "render" not in str(w.message)]
    assert messages == []


def test_reward_is_log_equity_change_and_fills_happen_at_next_open():
    bars = small_bars()
    env = make_env(bars, fee_bps=5.0, slippage_bps=2.0, deadband_frac=0.0)
    opens = bars["open"].to_numpy()
    obs, info = env.reset(seed=0)
    rng = np.random.default_rng(1)
    equity, n_fills, first_ts = info["equity_usd"], 0, info["bar_ts"]
    t = bars["ts"].to_list().index(first_ts)
    for _ in range(200):
        obs, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, size=1).astype(np.float32))
        t += 1
        assert info["bar_ts"] == bars["ts"][t]
        assert reward == pytest.approx(math.log(info["equity_usd"] / equity), abs=1e-15)
        pf = env.portfolio
        assert info["equity_usd"] == pytest.approx(pf.cash_usd + pf.position_qty * bars["close"][t])
        if info["fill_qty"] != 0:
            n_fills += 1
            side = 1 if info["fill_qty"] > 0 else -1
            assert info["fill_price_usd"] == pytest.approx(opens[t] * (1 + side * 2e-4))
            assert info["fee_usd"] == pytest.approx(abs(info["fill_qty"]) * info["fill_price_usd"] * 5e-4)
        equity = info["equity_usd"]
        assert not terminated and not truncated
    assert n_fills > 150 and env.portfolio.n_trades == n_fills


def test_observations_equal_live_path_built_from_incremental_features():
    bars = small_bars(900)
    env = make_env(bars)
    builder = env.builder
    inc = IncrementalFeatures(builder.feature_names, window=WINDOW, warmup_bars=WARMUP)
    rows = bars.iter_rows(named=True)
    obs, info = env.reset(seed=0)
    for row in rows:  # feed bars up to the first decision bar
        inc.update(row)
        if row["ts"] == info["bar_ts"]:
            break
    rng = np.random.default_rng(2)
    for _ in range(150):
        live = builder.build(inc.window_array(), env.portfolio.state(info["close_usd"]))
        np.testing.assert_allclose(live, obs, rtol=0, atol=1e-9)
        obs, _, _, _, info = env.step(rng.uniform(-1, 1, size=1).astype(np.float32))
        inc.update(next(rows))


def test_period_bounds_random_starts_and_episode_length_are_seeded():
    bars = small_bars()
    ts = bars["ts"]
    env = make_env(bars, start_ts=ts[500], end_ts=ts[1000], max_episode_steps=30, random_start=True)
    assert env.period_span == (ts[500], ts[1000])
    starts = []
    for seed in (11, 12, 13):
        _, info = env.reset(seed=seed)
        starts.append(info["bar_ts"])
        assert ts[500] <= info["bar_ts"] <= ts[1000 - 30]
        n = 0
        truncated = False
        while not truncated:
            _, _, _, truncated, info = env.step(np.zeros(1, dtype=np.float32))
            n += 1
        assert n == 30 and info["bar_ts"] <= ts[1000]
    again = [make_env(bars, start_ts=ts[500], end_ts=ts[1000], max_episode_steps=30, random_start=True)
             .reset(seed=s)[1]["bar_ts"] for s in (11, 12, 13)]
    assert again == starts and len(set(starts)) == 3
    full = make_env(bars, start_ts=ts[500], end_ts=ts[1000])
    assert full.n_period_steps == 500


def test_state_round_trip_continues_identically():
    env = make_env(max_episode_steps=40, random_start=True)
    env.reset(seed=5)
    for a in (0.5, -0.3, 0.9):
        env.step(np.array([a], dtype=np.float32))
    state = env.get_state()
    other = make_env(max_episode_steps=40, random_start=True)
    other.set_state(state)
    for a in (0.1, -0.8):
        o1, r1, *_ = env.step(np.array([a], dtype=np.float32))
        o2, r2, *_ = other.step(np.array([a], dtype=np.float32))
        np.testing.assert_array_equal(o1, o2)
        assert r1 == r2
    assert env.reset()[1]["bar_ts"] == other.reset()[1]["bar_ts"]  # same RNG stream


def test_too_short_period_is_a_config_error():
    bars = small_bars(300)
    with pytest.raises(ConfigError, match="no tradable bar"):
        make_env(bars, end_ts=bars["ts"][WARMUP + WINDOW - 3])
