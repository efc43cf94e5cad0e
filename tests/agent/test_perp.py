"""Perpetual economics in the environment and the paper broker: funding, liquidation, one cost model."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from quantnb.agent import (
    MARGIN_TIERS,
    ActionInterpreter,
    FeatureScaler,
    FillModel,
    FundingRates,
    MarketRules,
    ObservationBuilder,
    TradingEnv,
    compute_features,
)
from quantnb.agent._perp import maintenance_margin_usd, settlements_between
from quantnb.agent._train_types import EnvSpec
from quantnb.errors import OperationalError
from quantnb.live._paper import PaperBroker
from quantnb.live._types import Bar
from tests.agent._helpers import WARMUP, WINDOW, small_bars

BTC_TIERS = MARGIN_TIERS[("binance_usdm", "BTCUSDT")]


def _env(bars: pl.DataFrame, fill_model: FillModel, max_frac: float = 1.0, deadband: float = 0.02, **kw):
    feats = compute_features(bars, warmup_bars=WARMUP)
    names = [c for c in feats.columns if c != "ts"]
    scaler = FeatureScaler.fit(feats, names)
    return TradingEnv(bars, observation_builder=ObservationBuilder(names, WINDOW, scaler),
                      action_interpreter=ActionInterpreter(max_frac, deadband), fill_model=fill_model,
                      features=feats, warmup_bars=WARMUP, **kw)


def test_settlements_are_at_00_08_16_utc():
    t0 = dt.datetime(2022, 1, 1, 7, 59, tzinfo=dt.UTC)
    got = settlements_between(t0, t0 + dt.timedelta(hours=24))
    assert [s.hour for s in got] == [8, 16, 0] and got[-1].day == 2
    assert settlements_between(t0, t0 + dt.timedelta(minutes=1)) == [t0.replace(hour=8, minute=0)]
    assert settlements_between(t0.replace(hour=8, minute=0), t0.replace(hour=8, minute=59)) == []  # (start, end]


def test_funding_at_settlements_equals_a_hand_computation(tmp_path):
    bars = small_bars()  # real BTC-PERP minutes from 2021-12-31 23:01: settlements 08:00 and 16:00 after warm-up
    path = tmp_path / "funding.parquet"
    s08 = dt.datetime(2022, 1, 1, 8, tzinfo=dt.UTC)
    pl.DataFrame({"ts": [s08], "rate": [0.0003]}).with_columns(pl.col("ts").dt.cast_time_unit("us")) \
        .write_parquet(path)
    funding = FundingRates.from_parquet(path, constant_rate=-0.0001)  # 16:00 is not listed: the fallback
    env = _env(bars, FillModel(4.0, 1.0), funding=funding)
    env.reset()
    ts, opens = bars["ts"].to_list(), bars["open"].to_numpy()
    hand, paid, done, t = {}, {}, False, env._t
    while not done:
        qty_before = env.portfolio.position_qty
        _, _, term, trunc, info = env.step(np.array([0.7], dtype=np.float32))
        done = term or trunc
        if info["funding_usd"]:
            paid[ts[t + 1]] = info["funding_usd"]
        if ts[t + 1].minute == 0 and ts[t + 1].hour in (0, 8, 16):
            rate = 0.0003 if ts[t + 1] == s08 else -0.0001
            hand[ts[t + 1]] = qty_before * opens[t + 1] * rate
        t += 1
    assert sorted(h.hour for h in hand) == [8, 16]
    assert paid == pytest.approx(hand, rel=1e-12)
    assert hand[s08] > 0 > hand[s08.replace(hour=16)]  # longs pay a positive rate, receive a negative one
    assert env.portfolio.funding_paid_usd == pytest.approx(sum(hand.values()), rel=1e-12)


def _crash_bars() -> pl.DataFrame:
    """Calm real-looking minutes, then a crash candle whose low is 25 % under its open (a flash crash)."""
    rng = np.random.default_rng(3)
    c = 40_000.0 * np.exp(np.cumsum(rng.normal(0, 2e-4, 260)))
    o = np.r_[c[0], c[:-1]]
    high, low = np.maximum(o, c) * 1.0005, np.minimum(o, c) * 0.9995
    low[230] = o[230] * 0.75
    start = dt.datetime(2022, 1, 3, 1, 0, tzinfo=dt.UTC)
    return pl.DataFrame({
        "ts": pl.Series([start + dt.timedelta(minutes=i) for i in range(c.size)]).dt.cast_time_unit("us"),
        "open": o, "high": high, "low": low, "close": c, "volume": np.full(c.size, 1e6),
    })


def test_a_5x_long_through_a_crash_is_liquidated_at_the_maintenance_margin():
    bars = _crash_bars()
    env = _env(bars, FillModel(5.0, 1.0), max_frac=5.0, deadband=0.5, margin_tiers=BTC_TIERS)
    env.reset()
    lows = bars["low"].to_numpy()
    info, term, t = {}, False, env._t
    while not term:
        cash0, q0 = env.portfolio.cash_usd, env.portfolio.position_qty
        _, _, term, trunc, info = env.step(np.array([1.0], dtype=np.float32))
        assert not trunc, "the crash must liquidate the position before the data ends"
        t += 1
    p = info["liquidation_price_usd"]
    assert p is not None and env.portfolio.position_qty == 0.0 and env.portfolio.n_liquidations == 1
    # by hand: after the step's fill, equity cash + q p equals the maintenance margin q p mmr (bracket 1: 0.4 %)
    q = q0 + info["fill_qty"]
    cash = cash0 - info["fill_qty"] * (info["fill_price_usd"] or 0.0) - info["fee_usd"]
    hand_p = -cash / (q * (1 - 0.004))
    assert q * hand_p < 50_000  # bracket 1 of Binance BTCUSDT
    assert p == pytest.approx(hand_p, rel=1e-12)
    assert t == 230 and lows[t] <= p and lows[t - 1] > p  # the crash candle's low reaches it
    assert env.portfolio.cash_usd == pytest.approx(maintenance_margin_usd(q * p, BTC_TIERS), rel=1e-9)
    assert env.portfolio.cash_usd == pytest.approx(0.004 * q * p, rel=1e-9)


def _bar(bars: pl.DataFrame, t: int, nxt: bool = True) -> Bar:
    r = bars.row(t, named=True)
    extras = {k: r[k] for k in ("spread_bps_mean", "bid_depth_10", "ask_depth_10") if k in r}
    return Bar(int(r["ts"].timestamp() * 1000), r["open"], r["high"], r["low"], r["close"], r["volume"],
               next_open=bars["open"][t + 1] if nxt else None, extras=extras)


def test_paper_broker_and_environment_charge_the_same_to_the_digit(tmp_path):
    bars = small_bars().with_columns(  # give the real bars a spread and depth, as book bars carry them
        spread_bps_mean=0.5 + (pl.col("high") - pl.col("low")) / pl.col("close") * 1e3,
        bid_depth_10=pl.lit(40.0), ask_depth_10=pl.lit(25.0))
    kw = dict(cross_spread=True, impact_coef=0.7)
    rules = MarketRules.for_venue("binance_usdm", "BTCUSDT")
    funding = FundingRates(constant_rate=0.0002)
    env = _env(bars, FillModel(5.0, 1.0, **kw), max_frac=3.0, market_rules=rules, funding=funding,
               margin_tiers=BTC_TIERS)
    paper = PaperBroker("BTCUSDT", 10_000.0, FillModel(5.0, 1.0, **kw), rules=rules, funding=funding,
                        margin_tiers=BTC_TIERS)
    env.reset()
    closes = bars["close"].to_numpy()
    rng = np.random.default_rng(11)
    t, done, n_fills, n_funding = env._t, False, 0, 0
    while not done:
        a = np.array([rng.uniform(-1, 1)], dtype=np.float32)
        funding_before = paper.portfolio.funding_paid_usd
        paper.on_bar(closes[t], bars["open"][t + 1], bar=_bar(bars, t))
        pos = paper.portfolio.position_qty
        frac = pos * closes[t] / paper.portfolio.equity(closes[t])
        decision = env.interpreter.decide(a, frac)
        pfill = None
        if decision.rebalance:
            qty = paper.portfolio.order_qty_for_target(decision.target_frac, closes[t])
            try:
                pfill = paper.market_order("buy" if qty > 0 else "sell", abs(qty))
            except OperationalError:  # below the lot step or minimum notional: the risk manager's no-order
                pfill = None
        _, _, term, trunc, info = env.step(a)
        done = term or trunc
        assert info["funding_usd"] == paper.portfolio.funding_paid_usd - funding_before
        n_funding += info["funding_usd"] != 0
        if pfill is None or pfill.qty == 0:
            assert info["fill_qty"] == 0.0
        else:
            n_fills += 1
            assert (pfill.qty, pfill.price_usd, pfill.fee_usd) == (info["fill_qty"], info["fill_price_usd"],
                                                                   info["fee_usd"])
            assert math.isclose(round(pfill.qty / 0.001), pfill.qty / 0.001, abs_tol=1e-9)  # on the lot step
        t += 1
    paper.on_bar(closes[t], None)
    assert n_fills > 50 and n_funding == 2
    ep, pp = env.portfolio.to_dict(), paper.portfolio.to_dict()
    assert ep == pp  # cash, position, fees, impact, funding, trades: equal to the digit
    assert pp["impact_paid_usd"] > 0 and pp["funding_paid_usd"] != 0


class _Constant:
    def predict(self, observation, deterministic=True):
        return np.array([0.8], dtype=np.float32), None


def test_evaluation_reports_cost_bps_fees_impact_and_funding():
    from quantnb.agent import evaluate_agent

    env = _env(small_bars(), FillModel(5.0, 2.0), funding=FundingRates(constant_rate=0.0001))
    a = evaluate_agent(_Constant(), env).agent
    pf = env.portfolio
    assert a.fees_usd == pf.fees_paid_usd > 0 and a.impact_usd == pf.impact_paid_usd > 0
    assert a.cost_bps == pytest.approx((pf.fees_paid_usd + pf.impact_paid_usd) / pf.traded_notional_usd * 1e4)
    assert 6.9 < a.cost_bps < 7.1  # 5 bps fee + 2 bps slippage
    assert a.funding_usd == pf.funding_paid_usd > 0  # a long pays a positive rate at 08:00 and 16:00


def test_a_position_held_through_a_gap_pays_its_settlement_in_env_and_paper_alike():
    full = small_bars()
    gap = (pl.col("ts") >= dt.datetime(2022, 1, 1, 7, 40, tzinfo=dt.UTC)) & \
        (pl.col("ts") < dt.datetime(2022, 1, 1, 8, 20, tzinfo=dt.UTC))
    bars = full.filter(~gap)
    funding = FundingRates(constant_rate=0.0003)
    env = _env(bars, FillModel(4.0, 1.0), funding=funding)
    paper = PaperBroker("BTCUSDT", 10_000.0, FillModel(4.0, 1.0), funding=funding)
    closes, opens, ts = bars["close"].to_numpy(), bars["open"].to_numpy(), bars["ts"].to_list()
    after = next(i for i, x in enumerate(ts) if x.hour == 8 and x.minute == 20)  # first bar after the gap
    env.reset()
    fed, held_at_gap = 0, None
    while True:
        t = env._t
        for i in range(fed, t + 1):
            paper.on_bar(closes[i], opens[i + 1], bar=_bar(bars, i))
        fed = t + 1
        decision = env.interpreter.decide(np.array([0.7]), env._position_frac(t))
        if decision.rebalance:
            qty = paper.portfolio.order_qty_for_target(decision.target_frac, closes[t])
            paper.market_order("buy" if qty > 0 else "sell", abs(qty))
        _, _, term, trunc, _ = env.step(np.array([0.7]))
        if trunc and env.has_next_run:
            if held_at_gap is None and env._t < after:
                held_at_gap = env.portfolio.position_qty
                before = env.portfolio.funding_paid_usd
                env.reset(options={"continue": True})
                assert env.portfolio.funding_paid_usd - before == pytest.approx(
                    held_at_gap * opens[after] * 0.0003, rel=1e-12)  # 08:00 paid at the first open after it
                continue
            env.reset(options={"continue": True})
            continue
        if term or trunc:
            break
    for i in range(fed, env._t + 1):
        paper.on_bar(closes[i], opens[i + 1] if i + 1 < len(opens) else None, bar=_bar(bars, i, i + 1 < len(opens)))
    assert held_at_gap is not None and held_at_gap > 0
    assert env.portfolio.to_dict() == paper.portfolio.to_dict()


def test_walk_forward_stitching_sums_impact_and_funding_and_weights_cost_bps():
    from quantnb.agent import evaluate_agent
    from quantnb.agent._evaluate import stitch_evaluations

    bars = small_bars()
    mid = bars["ts"][700]
    evs = []
    for kw, fm in ((dict(end_ts=mid), FillModel(5.0, 2.0)), (dict(start_ts=mid), FillModel(4.0, 1.0))):
        env = _env(bars, fm, funding=FundingRates(constant_rate=0.0001), **kw)
        evs.append(evaluate_agent(_Constant(), env, n_boot=50))
    s = stitch_evaluations(evs, n_boot=50).agent
    assert s.impact_usd == pytest.approx(sum(e.agent.impact_usd for e in evs))
    assert s.funding_usd == pytest.approx(sum(e.agent.funding_usd for e in evs))
    assert evs[1].agent.cost_bps < s.cost_bps < evs[0].agent.cost_bps  # between the folds' 4 + 1 and 5 + 2 bps


def test_buy_and_hold_pays_the_same_funding():
    from quantnb.agent import evaluate_agent

    bars = small_bars()
    env = _env(bars, FillModel(4.0, 1.0), funding=FundingRates(constant_rate=0.0005))
    ev = evaluate_agent(_Constant(), env, n_boot=50)
    close = np.array([bars["close"][bars["ts"].to_list().index(x)] for x in ev.bar_ts])
    qty = ev.equity_usd[0] / (close[0] * (1 + 1e-4) * (1 + 4e-4))  # bought with all equity at the agent's costs
    ts, opens = bars["ts"].to_list(), bars["open"].to_numpy()
    hand = sum(qty * opens[i] * 0.0005 for i in range(1, len(ts))
               if ev.bar_ts[0] < ts[i] <= ev.bar_ts[-1] and ts[i].minute == 0 and ts[i].hour in (0, 8, 16))
    assert hand > 0
    assert ev.buy_and_hold_equity_usd[-1] == pytest.approx(qty * close[-1] - hand, rel=1e-12)


@pytest.mark.parametrize(("venue", "floor_usd", "cap_usd", "mmr", "deduction_usd"), [
    # Binance bracket 4: cum = 50k * 0.1 % + 600k * 0.15 % + 3M * 0.35 %
    ("binance_usdm", 3_000_000.0, 12_000_000.0, 0.01, 50.0 + 900.0 + 10_500.0),
    # Bybit tier 3: mmDeduction = 2M * 0.5 % + 4M * 0.5 %
    ("bybit_linear", 4_000_000.0, 6_000_000.0, 0.015, 10_000.0 + 20_000.0),
])
def test_a_large_5x_long_is_liquidated_at_each_venues_tiered_maintenance_margin(venue, floor_usd, cap_usd, mmr,
                                                                              deduction_usd):
    tiers = MARGIN_TIERS[(venue, "BTCUSDT")]
    env = _env(_crash_bars(), FillModel(5.0, 1.0), max_frac=5.0, deadband=0.5, margin_tiers=tiers,
               initial_equity_usd=1_200_000.0)  # 6M USDT of notional: a high tier on both venues
    env.reset()
    term = False
    while not term:
        cash0, q0 = env.portfolio.cash_usd, env.portfolio.position_qty
        _, _, term, trunc, info = env.step(np.array([1.0], dtype=np.float32))
        assert not trunc, "the crash must liquidate the position before the data ends"
    q = q0 + info["fill_qty"]
    cash = cash0 - info["fill_qty"] * (info["fill_price_usd"] or 0.0) - info["fee_usd"]
    hand_p = -(cash + deduction_usd) / (q * (1 - mmr))  # equity cash + q p = q p mmr - deduction
    assert floor_usd <= q * hand_p < cap_usd
    assert info["liquidation_price_usd"] == pytest.approx(hand_p, rel=1e-12)
    assert env.portfolio.cash_usd == pytest.approx(mmr * q * hand_p - deduction_usd, rel=1e-9)


def test_margin_tiers_are_selected_by_the_venue():
    for venue in ("binance_usdm", "bybit_linear"):
        tiers = EnvSpec(venue_rules=venue).cost_setup("BTC/USDT:USDT")["margin_tiers"]
        assert tiers is MARGIN_TIERS[(venue, "BTCUSDT")]
        assert all(a.floor_usd < b.floor_usd and a.mmr < b.mmr and a.max_leverage > b.max_leverage
                   for a, b in zip(tiers, tiers[1:], strict=False))
    assert MARGIN_TIERS[("bybit_linear", "BTCUSDT")][0] != MARGIN_TIERS[("binance_usdm", "BTCUSDT")][0]
