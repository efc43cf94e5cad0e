"""Lot step and minimum notional: one MarketRules, the same rounding in the environment, paper and testnet."""

from __future__ import annotations

import math

import numpy as np
import pytest

from quantnb.agent import FillModel, MarketRules
from quantnb.errors import ConfigError, OperationalError
from quantnb.live import RiskLimits
from quantnb.live._ccxt_broker import CcxtBroker
from quantnb.live._paper import PaperBroker
from quantnb.live._risk import RiskControl
from quantnb.live._types import AccountState
from quantnb.live._types import MarketRules as LiveMarketRules
from tests.agent._helpers import small_bars
from tests.agent.test_perp import _env

RAW_QTYS = [0.0123456, -0.0567891, 0.0021, 0.00099, -0.2509999, 0.0029, 0.1]  # base units, BTC
EQUITY = 10_000.0


def test_market_rules_have_one_owner_and_a_venue_table():
    assert LiveMarketRules is MarketRules
    r = MarketRules.for_venue("binance_usdm", "BTC/USDT:USDT")
    assert (r.qty_step, r.min_qty, r.min_notional_usd, r.tick_size) == (0.001, 0.001, 100.0, 0.1)
    assert r.round_qty(-0.0567891) == -0.056 and r.round_price(46_000.06) == 46_000.1
    assert r.admit(0.05, 1_000.0, position_qty=-0.05) == (0.05, "")  # closing exactly: no minimum notional
    with pytest.raises(ConfigError, match="no tabled market rules"):
        MarketRules.for_venue("binance_usdm", "DOGEUSDT")


def _env_fill(env, t0: int, qty: float) -> float:
    env.reset()
    assert env._t == t0
    close = float(env._close[t0])
    action = np.array([qty * close / EQUITY / env.interpreter.max_position_frac], dtype=np.float64)
    _, _, _, _, info = env.step(action)
    return info["fill_qty"]


def test_lot_step_and_min_notional_round_identically_in_env_paper_and_testnet(server, fake_keys):
    bars = small_bars()
    rules = MarketRules.for_venue("binance_usdm", "BTCUSDT")  # = the loopback server's BTCUSDT filters
    env = _env(bars, FillModel(5.0, 0.0), max_frac=3.0, deadband=0.0, market_rules=rules)
    t0 = env._first
    close, nxt = float(bars["close"][t0]), float(bars["open"][t0 + 1])
    broker = CcxtBroker("BTCUSDT", "testnet", base_url=server.base_url)
    broker.connect()
    assert broker.rules == rules
    server.set_price("BTCUSDT", nxt)
    risk = RiskControl(RiskLimits(0.9, 3.0), broker.rules)

    got_env, got_paper, got_testnet = [], [], []
    for q in RAW_QTYS:
        got_env.append(_env_fill(env, t0, q))

        paper = PaperBroker("BTCUSDT", EQUITY, FillModel(5.0, 0.0), rules=rules)
        paper.on_bar(close, nxt)
        try:
            got_paper.append(paper.market_order("buy" if q > 0 else "sell", abs(q)).qty)
        except OperationalError:
            got_paper.append(0.0)

        pos = server.position_amt()
        acct = AccountState(EQUITY, EQUITY, pos, 0.0, close)
        plan = risk.plan((pos + q) * close / EQUITY, acct, close)
        if plan.side is None:
            got_testnet.append(0.0)
        else:
            got_testnet.append(broker.market_order(plan.side, plan.qty).qty)

    expected = [0.012, -0.056, 0.0, 0.0, -0.25, 0.0, 0.1]  # 0.0021 BTC ~ 97 USD and 0.0029 -> 0.002 < 100 USD
    assert got_env == pytest.approx(expected, abs=1e-12)
    assert got_paper == got_env
    assert got_testnet == pytest.approx(got_env, abs=1e-12)
    sent = [p["quantity"] for m, path, p in server.requests if m == "POST" and path == "/fapi/v1/order"]
    assert sent == ["0.012", "0.056", "0.25", "0.1"]


def test_fill_prices_round_to_the_tick_against_the_trader_identically_in_env_paper_and_testnet(server, fake_keys):
    bars = small_bars()
    rules = MarketRules.for_venue("binance_usdm", "BTCUSDT")  # tick 0.1 = the loopback server's PRICE_FILTER
    env = _env(bars, FillModel(5.0, 1.0), max_frac=3.0, deadband=0.0, market_rules=rules)
    t0 = env._t
    close, nxt = float(bars["close"][t0]), float(bars["open"][t0 + 1])
    broker = CcxtBroker("BTCUSDT", "testnet", base_url=server.base_url)
    broker.connect()
    got: dict[str, list[float]] = {"env": [], "paper": [], "testnet": []}
    for q in (0.05, -0.05):
        env.reset()
        _, _, _, _, info = env.step(np.array([q * close / EQUITY / 3.0]))
        got["env"].append(info["fill_price_usd"])
        paper = PaperBroker("BTCUSDT", EQUITY, FillModel(5.0, 1.0), rules=rules)
        paper.on_bar(close, nxt)
        got["paper"].append(paper.market_order("buy" if q > 0 else "sell", abs(q)).price_usd)
        server.set_price("BTCUSDT", nxt * (1 + math.copysign(1e-4, q)))  # the venue's price where the model's is
        got["testnet"].append(broker.market_order("buy" if q > 0 else "sell", abs(q)).price_usd)
    model = [nxt * (1 + 1e-4), nxt * (1 - 1e-4)]
    assert all(abs(m / 0.1 - round(m / 0.1)) > 1e-3 for m in model)  # the model's prices lie off the tick
    assert all(round(p / 0.1) * 0.1 == pytest.approx(p, abs=1e-9) for p in got["env"])  # on the tick
    assert got["env"][0] >= model[0] and got["env"][1] <= model[1]  # buy up, sell down
    assert got["env"][0] - model[0] < 0.1 and model[1] - got["env"][1] < 0.1
    assert got["paper"] == got["env"]
    assert got["testnet"] == pytest.approx(got["env"], abs=1e-9)
