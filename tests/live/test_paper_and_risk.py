from __future__ import annotations

import math

import pytest

from quantnb.agent import FillModel
from quantnb.errors import ConfigError, OperationalError, RateLimitError, TemporaryError
from quantnb.live import MarketRules, PaperBroker, RiskLimits
from quantnb.live._risk import RiskControl
from quantnb.live._state import TradingState
from quantnb.live._types import AccountState
from quantnb.retry import RetryPolicy, retry_temporary


def test_paper_fills_at_next_open_with_slippage_and_fee_and_marks_at_close():
    broker = PaperBroker("BTC-PERP", 10_000.0, FillModel(fee_bps=5.0, slippage_bps=2.0))
    broker.on_bar(close_price=46_000.0, next_open=46_100.0)
    fill = broker.market_order("buy", 0.1)
    assert fill.price_usd == pytest.approx(46_100.0 * (1 + 2e-4))
    assert fill.fee_usd == pytest.approx(0.1 * fill.price_usd * 5e-4)
    acct = broker.account()  # still marked at the close of the decision bar
    assert acct.position_qty == pytest.approx(0.1)
    assert acct.equity_usd == pytest.approx(10_000.0 - 0.1 * fill.price_usd - fill.fee_usd + 0.1 * 46_000.0)
    assert acct.balance_usd == pytest.approx(10_000.0 - fill.fee_usd)
    broker.on_bar(close_price=47_000.0, next_open=None)  # last bar: fills at the close
    close = broker.close_position("BTC-PERP", 0.1)
    assert close.side == "sell" and close.reduce_only and close.price_usd == pytest.approx(47_000.0 * (1 - 2e-4))
    assert broker.positions() == {}
    assert broker.portfolio.n_trades == 2


def test_paper_refuses_orders_that_cannot_be_filled():
    broker = PaperBroker("BTC-PERP", 1_000.0, FillModel(5.0, 0.0))
    with pytest.raises(OperationalError, match="before any candle"):
        broker.market_order("buy", 0.01)
    broker.on_bar(100.0, 100.0)
    with pytest.raises(OperationalError, match="reduce-only"):
        broker.market_order("sell", 1.0, reduce_only=True)


def _acct(equity=10_000.0, pos=0.0):
    return AccountState(balance_usd=equity, equity_usd=equity, position_qty=pos, entry_price=0.0, mark_price=50_000.0)


def test_risk_sizes_rounds_to_step_and_clips_to_position_limit():
    risk = RiskControl(RiskLimits(max_drawdown_frac=0.1, max_position_frac=0.5),
                       MarketRules(qty_step=0.001, min_qty=0.001, min_notional_usd=100.0))
    plan = risk.plan(1.0, _acct(), 50_000.0)  # clipped to 0.5 of 10,000 USD = 0.1 BTC
    assert (plan.side, plan.qty, plan.target_frac) == ("buy", 0.1, 0.5)
    plan = risk.plan(-0.5, _acct(pos=0.1), 50_000.0)
    assert (plan.side, plan.qty) == ("sell", 0.2)
    plan = risk.plan(0.0123, _acct(), 50_000.0)  # 0.00246 BTC -> 0.002 BTC = 100 USD: allowed
    assert (plan.side, plan.qty) == ("buy", 0.002)
    plan = risk.plan(0.009, _acct(), 50_000.0)  # 0.0018 -> 0.001 BTC = 50 USD < min notional
    assert plan.side is None and "minimum notional" in plan.reason
    plan = risk.plan(0.0, _acct(pos=0.001), 50_000.0)  # closing a small position exactly is allowed
    assert (plan.side, plan.qty) == ("sell", 0.001)
    assert risk.plan(1.0, _acct(), 50_000.0, state=TradingState.HALTED).side is None
    reducing = TradingState.REDUCING
    assert risk.plan(1.0, _acct(), 50_000.0, state=reducing).side is None  # would open a position
    assert risk.plan(1.0, _acct(pos=0.05), 50_000.0, state=reducing).side is None  # would grow it
    assert (risk.plan(0.0, _acct(pos=0.05), 50_000.0, state=reducing).side, "sell") == ("sell", "sell")


def test_drawdown_is_measured_from_peak_equity():
    risk = RiskControl(RiskLimits(max_drawdown_frac=0.1), MarketRules())
    assert not risk.update_equity(100.0)
    assert not risk.update_equity(120.0)
    assert not risk.update_equity(109.0)
    assert risk.drawdown_frac == pytest.approx(1 - 109 / 120)
    assert risk.update_equity(108.0)  # exactly 10 % below the peak of 120
    assert risk.peak_equity_usd == 120.0 and risk.max_drawdown_frac_seen == pytest.approx(0.1)


@pytest.mark.parametrize("kwargs", [{"max_drawdown_frac": 0.0}, {"max_drawdown_frac": 1.0},
                                    {"max_position_frac": 0.0}, {"max_position_frac": math.nan}])
def test_risk_limits_refuse_out_of_range_values(kwargs):
    with pytest.raises(ConfigError):
        RiskLimits(**kwargs)


def test_retry_retries_only_temporary_errors_and_honours_retry_after(retry_waits):
    calls = []

    @retry_temporary(RetryPolicy(attempts=4, wait_initial_s=0.5, wait_exp_base=1.0, wait_jitter_s=0.0,
                                 max_retry_after_s=60.0))
    def flaky(fails: list) -> str:
        calls.append(1)
        if fails:
            raise fails.pop(0)
        return "ok"

    assert flaky([TemporaryError("5xx"), RateLimitError("429", retry_after_s=7.0)]) == "ok"
    assert retry_waits.calls == [0.5, 7.0]
    calls.clear()
    with pytest.raises(OperationalError):
        flaky([OperationalError("rejected"), TemporaryError("x")])
    assert len(calls) == 1  # never retried
    with pytest.raises(RateLimitError):  # a ban longer than max_retry_after_s is not waited out
        flaky([RateLimitError("418", retry_after_s=3600.0)])
    retry_waits.calls.clear()
    with pytest.raises(TemporaryError, match="4"):
        flaky([TemporaryError(str(i)) for i in range(1, 6)])
    assert retry_waits.calls == [0.5, 0.5, 0.5]
