from __future__ import annotations

import math

import numpy as np
import pytest

from quantnb.agent import MINUTES_PER_YEAR, evaluate_agent, performance_metrics
from quantnb.errors import ConfigError
from tests.agent._helpers import hand_bars, make_env, month_bars


class ConstantPolicy:
    """Stand-in predictor: always the same action (tests the evaluation loop, not a model)."""

    def __init__(self, action: float) -> None:
        self.action = action
        self.calls = 0

    def predict(self, observation, deterministic=False):
        assert deterministic
        self.calls += 1
        return np.array([self.action], dtype=np.float32), None


def _sharpe(eq: list[float]) -> float:
    r = np.diff(eq) / np.asarray(eq[:-1])
    return float(r.mean() / r.std(ddof=1) * math.sqrt(MINUTES_PER_YEAR))


def test_performance_metrics_on_a_hand_built_curve():
    m = performance_metrics(np.array([100.0, 120.0, 90.0, 135.0]), n_trades=3, fees_usd=1.5)
    assert m.total_return_frac == pytest.approx(0.35)
    assert m.max_drawdown_frac == pytest.approx(0.25)  # 120 -> 90
    assert m.sharpe_annualised == pytest.approx(_sharpe([100.0, 120.0, 90.0, 135.0]))
    assert (m.n_trades, m.fees_usd, m.n_steps) == (3, 1.5, 3)
    flat = performance_metrics(np.full(5, 10.0))
    assert flat.sharpe_annualised == 0.0 and flat.max_drawdown_frac == 0.0
    with pytest.raises(ConfigError, match=">= 2 positive values"):
        performance_metrics(np.array([1.0]))


def test_always_long_agent_against_buy_and_hold_on_hand_path(tmp_path):
    pre = [100.0 + 2.0 * math.sin(i / 3.0) for i in range(70)]
    path = [100.0, 110.0, 99.0, 121.0, 115.0, 130.0]
    bars = hand_bars(pre + path)  # open = previous close, so the next-open fill is at the decision close
    env = make_env(bars, fee_bps=10.0, slippage_bps=0.0, deadband_frac=0.01, split=70, start_ts=bars["ts"][70],
                   warmup_bars=61)
    policy = ConstantPolicy(1.0)
    plot = tmp_path / "debug_plots" / "run" / "equity_curve.png"
    ev = evaluate_agent(policy, env, plot_path=plot)
    e0, fee = 10_000.0, 10_000.0 * 10e-4
    expected = [e0] + [e0 * c / 100.0 - fee for c in path[1:]]
    np.testing.assert_allclose(ev.equity_usd, expected, rtol=1e-12)
    assert ev.agent.total_return_frac == pytest.approx(12_990 / 10_000 - 1)
    assert ev.agent.max_drawdown_frac == pytest.approx(1 - 9_890 / 10_990)
    assert ev.agent.sharpe_annualised == pytest.approx(_sharpe(expected))
    assert (ev.agent.n_trades, ev.agent.fees_usd) == (1, pytest.approx(fee))
    assert ev.buy_and_hold.total_return_frac == pytest.approx(1.30 / 1.001 - 1)  # pays the agent's 10 bps entry fee
    assert ev.buy_and_hold.max_drawdown_frac == pytest.approx(0.10)
    # the table reports what buy-and-hold paid: one buy of 10,000 / 1.001 USD notional at 10 bps
    bh = ev.buy_and_hold
    assert (bh.n_trades, bh.fees_usd, bh.cost_bps) == (1, pytest.approx(e0 / 1.001 * 1e-3), pytest.approx(10.0))
    assert ev.periods_per_year == pytest.approx(MINUTES_PER_YEAR)
    assert policy.calls == len(ev.actions) == 5 and ev.actions.tolist() == [1.0] * 5
    assert ev.observations.shape == (5, env.builder.n_obs) and ev.observations.dtype == np.float32
    assert ev.flat_metrics()["bh_total_return_frac"] == pytest.approx(1.30 / 1.001 - 1)
    assert ev.metrics_dict()["agent"]["n_trades"] == 1
    assert ev.steps_frame().height == 5 and ev.summary_frame()["metric"][0] == "total_return_frac"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluation_refuses_random_start_env():
    env = make_env(max_episode_steps=10, random_start=True)
    with pytest.raises(ConfigError, match="random_start=False"):
        evaluate_agent(ConstantPolicy(0.0), env)


def test_every_evaluation_figure_carries_its_uncertainty_and_buy_and_hold_pays_the_same_fees():
    bars = month_bars().slice(0, 4_500)  # ~3 days of real minutes: far too short to show skill
    env = make_env(bars, fee_bps=5.0, slippage_bps=1.0, split=600, start_ts=bars["ts"][600])
    one = evaluate_agent(ConstantPolicy(1.0), env, n_trials=1, n_boot=300, seed=4)
    env8 = make_env(bars, fee_bps=5.0, slippage_bps=1.0, split=600, start_ts=bars["ts"][600])
    eight = evaluate_agent(ConstantPolicy(1.0), env8, n_trials=8, n_boot=300, seed=4)
    table = {r["metric"]: r for r in one.summary_frame().iter_rows(named=True)}
    for row in ("sharpe_ci_low", "sharpe_ci_high", "sharpe_daily_annualised", "return_ci_low", "return_ci_high",
                "psr", "dsr", "n_trials", "min_track_record_days"):
        assert row in table, row
    a = one.agent_stats
    assert a.sharpe_ci_low < one.agent.sharpe_annualised < a.sharpe_ci_high
    assert a.return_ci_low < one.agent.total_return_frac < a.return_ci_high
    assert a.sharpe_ci_low < 0 < a.sharpe_ci_high and "not distinguishable from zero" in a.verdict
    assert a.sharpe_daily_annualised is not None and a.n_days >= 3
    # more trials on the same data can only deflate the Sharpe; the figures themselves do not move
    assert eight.agent_stats.dsr < one.agent_stats.dsr and eight.agent_stats.n_trials == 8
    assert eight.agent_stats.sharpe_ci_low == a.sharpe_ci_low  # seeded
    # buy-and-hold pays entry fee and slippage: 6 bps of the initial equity, against the free version
    close = bars["close"].to_numpy()[600:]
    free = close[-1] / close[0] - 1
    assert one.buy_and_hold.total_return_frac == pytest.approx((1 + free) / (1.0005 * 1.0001) - 1, rel=1e-9)
    assert one.metrics_dict()["agent"]["verdict"] == a.verdict
    assert one.verdicts()[1].startswith("buy-and-hold:") and one.verdicts()[2].startswith("timing:")
    # the timing null holds the agent's own positions: same exposure, same gross return when not shifted
    held, r = one.position_frac[:-1], one.asset_return
    assert one.timing_null.gross_return_frac == pytest.approx(float(held @ r))
    assert one.flat_metrics()["timing_p_value"] == one.timing_null.p_value


def test_the_always_flat_null_says_whether_trading_beat_doing_nothing_after_fees():
    bars = month_bars().slice(0, 4_500)
    flat_env = make_env(bars, fee_bps=5.0, slippage_bps=1.0, split=600, start_ts=bars["ts"][600])
    never = evaluate_agent(ConstantPolicy(0.0), flat_env, n_boot=300, seed=2)  # never trades: it *is* the null
    n = never.flat_null()
    assert never.agent.n_trades == 0 and n["agent_minus_flat_return_frac"] == 0.0
    assert n["diff_ci_low"] == n["diff_ci_high"] == 0.0 and "is not distinguishable from staying flat" in n["verdict"]
    long_env = make_env(bars, fee_bps=5.0, slippage_bps=1.0, split=600, start_ts=bars["ts"][600])
    long = evaluate_agent(ConstantPolicy(1.0), long_env, n_boot=300, seed=2)
    f = long.metrics_dict()["always_flat"]
    assert f["agent_minus_flat_return_frac"] == long.agent.total_return_frac
    assert (f["diff_ci_low"], f["diff_ci_high"]) == (long.agent_stats.return_ci_low, long.agent_stats.return_ci_high)
    assert f["fees_usd"] == 0.0 and f["n_trades"] == 0
    assert long.verdicts()[-1] == f["verdict"] and f["verdict"].startswith("always-flat:")
    assert f"{long.agent.fees_usd:,.2f} USD fees" in f["verdict"]
    # a losing series by construction: every step loses 1 %, so the agent loses to the flat book distinguishably
    eq = 10_000.0 * 0.99 ** np.arange(50)
    from dataclasses import replace

    from quantnb.evaluation import sharpe_report
    losing = replace(long, agent=performance_metrics(eq), agent_stats=sharpe_report(
        eq * (1 + 1e-4 * np.sin(np.arange(50))), long.bar_ts[:50], periods_per_year=MINUTES_PER_YEAR, n_boot=200))
    assert "loses to staying flat" in losing.flat_null()["verdict"]
