"""One Fill for research and paper trading, latency in bars, fills rounded to the tick (env = paper)."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

import quantnb.live
import quantnb.live._types as live_types
from quantnb.agent import Fill, FillModel, FundingRates, MarketRules, evaluate_agent
from quantnb.errors import ConfigError, OperationalError
from quantnb.live._paper import PaperBroker
from quantnb.stages._agent_eval import cost_metrics
from tests.agent._helpers import small_bars
from tests.agent.test_perp import _bar, _env

RULES = MarketRules.for_venue("binance_usdm", "BTCUSDT")  # tick 0.1, lot 0.001, min notional 100 USDT


def test_one_fill_type_for_the_environment_and_the_paper_broker():
    assert not hasattr(live_types, "Fill") and "Fill" not in quantnb.live.__all__
    paper = PaperBroker("BTCUSDT", 10_000.0, FillModel(5.0, 1.0))
    paper.on_bar(46_000.0, 46_010.0)
    f = paper.market_order("sell", 0.05, client_order_id="cid-1")
    assert isinstance(f, Fill) and f.qty == -0.05 and f.side == "sell" and f.client_order_id == "cid-1"
    assert f.price_usd == 46_010.0 * (1 - 1e-4) and f.reference_price_usd == 46_010.0
    assert f.fee_usd == pytest.approx(f.notional_usd * 5e-4, rel=1e-12)
    assert f.impact_usd == pytest.approx(0.05 * 46_010.0 * 1e-4)


def test_a_fill_is_rounded_to_the_tick_against_the_trader():
    assert RULES.round_fill_price(46_000.01, 1.0) == 46_000.1 and RULES.round_fill_price(46_000.09, -1.0) == 46_000.0
    assert RULES.round_fill_price(46_000.1, 1.0) == 46_000.1 == RULES.round_fill_price(46_000.1, -1.0)  # on the tick
    model = FillModel(5.0, 1.0)
    buy, sell = model.fill(0.05, 46_000.03, rules=RULES), model.fill(-0.05, 46_000.03, rules=RULES)
    assert (buy.price_usd, sell.price_usd) == (46_004.7, 45_995.4)  # 46_004.63 and 45_995.43 before rounding
    assert buy.fee_usd == pytest.approx(0.05 * 46_004.7 * 5e-4, rel=1e-12)
    assert buy.impact_usd == pytest.approx(0.05 * 4.67, rel=1e-9)  # the tick is a cost against the reference


def _paper_order(paper: PaperBroker, target_frac: float, close: float) -> None:
    qty = paper.portfolio.order_qty_for_target(target_frac, close) - paper.in_flight_qty()
    try:
        paper.market_order("buy" if qty > 0 else "sell", abs(qty))
    except OperationalError:  # below the lot step or the minimum notional: no order, as in the environment
        pass


def test_latency_of_two_bars_fills_at_the_third_open_identically_in_env_and_paper():
    bars = small_bars()
    model = dict(fee_bps=5.0, slippage_bps=1.0)
    env = _env(bars, FillModel(**model), max_frac=2.0, deadband=0.0, market_rules=RULES, latency_bars=2)
    paper = PaperBroker("BTCUSDT", 10_000.0, FillModel(**model), rules=RULES, latency_bars=2)
    opens, closes = bars["open"].to_numpy(), bars["close"].to_numpy()
    env.reset()
    t0 = t = env._t
    rng = np.random.default_rng(5)
    infos, done = [], False
    while not done:
        a = np.array([1.0 if t < t0 + 3 else rng.uniform(-1, 1)], dtype=np.float32)
        paper.on_bar(closes[t], opens[t + 1], bar=_bar(bars, t))
        assert paper.portfolio.to_dict() == env.portfolio.to_dict()  # equal to the digit before each decision
        pf = paper.portfolio
        decision = env.interpreter.decide(a, pf.position_qty * closes[t] / pf.equity(closes[t]))
        if decision.rebalance:
            _paper_order(paper, decision.target_frac, closes[t])
        _, _, term, trunc, info = env.step(a)
        infos.append(info)
        done, t = term or trunc, t + 1
    paper.on_bar(closes[t], None)
    assert paper.portfolio.to_dict() == env.portfolio.to_dict()
    # the order decided at t0 (target 2x equity) fills at open[t0 + 3], once: the in-flight order counts in sizing
    assert infos[0]["fill_qty"] == infos[1]["fill_qty"] == 0.0
    q = RULES.round_qty(2.0 * 10_000.0 / closes[t0])
    assert infos[2]["fill_qty"] == q
    assert infos[2]["fill_price_usd"] == RULES.round_fill_price(opens[t0 + 3] * (1 + 1e-4), q)
    assert env.portfolio.n_trades > 20


def test_latency_bars_is_a_non_negative_integer():
    with pytest.raises(ConfigError, match="latency_bars"):
        PaperBroker("BTCUSDT", 10_000.0, FillModel(5.0, 1.0), latency_bars=-1)
    with pytest.raises(ConfigError, match="latency_bars"):
        _env(small_bars(), FillModel(5.0, 1.0), latency_bars=1.5)
    assert not math.isnan(RULES.tick_size)


class _Seeded:
    """A stub policy: seeded uniform actions (a market with no edge for it)."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(2)

    def predict(self, obs, deterministic=True):
        return np.array([self.rng.uniform(-1, 1)], dtype=np.float32), None


def test_gross_return_minus_costs_and_funding_is_the_net_return_for_the_agent_and_buy_and_hold():
    bars = small_bars().with_columns(spread_bps_mean=pl.lit(3.0))
    fm = FillModel(5.0, 1.0, cross_spread=True, impact_coef=0.5)
    env = _env(bars, fm, max_frac=2.0, deadband=0.05, market_rules=RULES, funding=FundingRates(constant_rate=0.0005))
    fills: list[tuple[float, dt.datetime]] = []
    step = env.step

    def recording_step(action):
        out = step(action)
        fills.append((out[4]["fill_qty"], out[4]["bar_ts"]))
        return out

    env.step = recording_step
    ev = evaluate_agent(_Seeded(), env, n_boot=20)
    a, b, e0 = ev.agent, ev.buy_and_hold, ev.equity_usd[0]
    opens = dict(zip(bars["ts"].to_list(), bars["open"].to_list(), strict=True))
    # by hand: the fills at their reference prices (the fill bar's open), the position marked at the last close
    q_end = sum(q for q, _ in fills)
    close = bars.filter(pl.col("ts").is_in(ev.bar_ts))["close"].to_numpy()  # the marks of the evaluation
    gross_usd = -sum(q * opens[t] for q, t in fills) + q_end * close[-1]
    assert a.impact_usd > 0 and a.fees_usd > 0 and a.funding_usd != 0 and a.n_trades > 20
    assert a.cost_usd == a.fees_usd + a.impact_usd
    assert a.gross_return_frac * e0 == pytest.approx(gross_usd, rel=1e-9, abs=1e-6)
    assert a.gross_return_frac - (a.cost_usd + a.funding_usd) / e0 == pytest.approx(a.total_return_frac, abs=1e-12)
    # buy-and-hold pays the same kinds of cost through the same fill model: spread and impact included
    qty = (ev.buy_and_hold_equity_usd[-1] + b.funding_usd) / close[-1]
    assert b.gross_return_frac * e0 == pytest.approx(qty * (close[-1] - close[0]), rel=1e-9)
    assert b.impact_usd > qty * close[0] * (1e-4 + 1.5e-4) and b.funding_usd > 0
    assert b.gross_return_frac - (b.cost_usd + b.funding_usd) / e0 == pytest.approx(b.total_return_frac, abs=1e-12)
    m = cost_metrics(ev.flat_metrics())  # run.json's figures
    assert m["net_return_frac"] == a.total_return_frac and m["bh_gross_return_frac"] == b.gross_return_frac
    assert {"gross_return_frac", "cost_usd", "funding_usd"} <= set(ev.summary_frame()["metric"].to_list())


def test_orders_in_flight_survive_a_paper_snapshot_and_restore():
    def broker() -> PaperBroker:
        return PaperBroker("BTCUSDT", 10_000.0, FillModel(5.0, 1.0), rules=RULES, latency_bars=2)

    a = broker()
    a.on_bar(46_000.0, 46_010.0)
    pending = a.market_order("buy", 0.1)
    assert (pending.qty, pending.unfilled_qty, pending.status, a.in_flight_qty()) == (0.0, 0.1, "paper-pending", 0.1)
    b = broker()
    b.restore(a.snapshot(), 46_000.0)
    assert b.in_flight_qty() == 0.1
    for px in (46_020.0, 46_030.0, 46_040.0):
        for x in (a, b):
            x.on_bar(px, px + 5.0)
    assert a.portfolio.to_dict() == b.portfolio.to_dict()
    assert b.portfolio.position_qty == 0.1 and b.in_flight_qty() == 0.0
    assert b.portfolio.avg_entry_price_usd == RULES.round_fill_price(46_035.0 * (1 + 1e-4), 1.0)  # open of bar 3


def test_the_evaluation_says_gross_costs_funding_and_net_in_one_line():
    env = _env(small_bars(), FillModel(5.0, 1.0), max_frac=2.0, funding=FundingRates(constant_rate=0.0005))
    ev = evaluate_agent(_Seeded(), env, n_boot=20)
    line = ev.cost_line()
    assert line in ev.verdicts() and ev.verdicts()[-1].startswith("always-flat:")
    a = ev.agent
    assert f"agent gross {a.gross_return_frac:+.2%}" in line and f"= net {a.total_return_frac:+.2%}" in line
    assert f"{a.fees_usd:,.2f} USD fees" in line and "buy-and-hold gross" in line
