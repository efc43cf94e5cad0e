from __future__ import annotations

import pytest

from quantnb.agent import FillModel, Portfolio
from quantnb.errors import ConfigError, OperationalError


def test_fill_prices_and_fees_by_hand():
    fm = FillModel(fee_bps=5.0, slippage_bps=2.0)
    buy = fm.fill(0.5, 40_000.0)
    assert buy.price_usd == pytest.approx(40_008.0)  # 40000 * (1 + 2e-4)
    assert buy.notional_usd == pytest.approx(20_004.0)  # 0.5 * 40008
    assert buy.fee_usd == pytest.approx(10.002)  # 20004 * 5e-4
    assert buy.side == "buy" and buy.reference_price_usd == 40_000.0
    sell = fm.fill(-0.25, 50_000.0)
    assert sell.price_usd == pytest.approx(49_990.0)  # 50000 * (1 - 2e-4)
    assert sell.fee_usd == pytest.approx(0.25 * 49_990.0 * 5e-4)
    assert sell.side == "sell"
    assert fm.fill(1e-15, 40_000.0) is None


def test_portfolio_accounting_long_reduce_flip_by_hand():
    fm = FillModel(fee_bps=10.0, slippage_bps=0.0)
    pf = Portfolio(10_000.0)
    pf.apply(fm.fill(0.2, 40_000.0))  # buy 8,000 USD, fee 8
    assert pf.cash_usd == pytest.approx(10_000 - 8_000 - 8)
    assert pf.avg_entry_price_usd == 40_000.0
    assert pf.equity(41_000.0) == pytest.approx(10_000 - 8 + 0.2 * 1_000)
    pf.apply(fm.fill(0.1, 43_000.0))  # add: average 41,000
    assert pf.avg_entry_price_usd == pytest.approx((0.2 * 40_000 + 0.1 * 43_000) / 0.3)
    pf.apply(fm.fill(-0.5, 44_000.0))  # close 0.3 (realise) and open 0.2 short at 44,000
    assert pf.realized_pnl_usd == pytest.approx(0.3 * (44_000 - 41_000))
    assert pf.position_qty == pytest.approx(-0.2)
    assert pf.avg_entry_price_usd == 44_000.0
    assert pf.n_trades == 3
    fees = 10e-4 * (8_000 + 4_300 + 22_000)
    assert pf.fees_paid_usd == pytest.approx(fees)
    mark = 42_000.0
    # equity identity: initial + realised + unrealised - fees
    assert pf.equity(mark) == pytest.approx(10_000 + pf.realized_pnl_usd + pf.unrealized_pnl(mark) - fees)
    state = pf.state(mark)
    assert state.position_frac == pytest.approx(-0.2 * mark / pf.equity(mark))
    assert state.unrealized_pnl_frac == pytest.approx(-0.2 * (mark - 44_000) / pf.equity(mark))
    assert state.equity_ratio == pytest.approx(pf.equity(mark) / 10_000)
    assert Portfolio.from_dict(pf.to_dict()).to_dict() == pf.to_dict()


def test_order_qty_for_target_is_sized_at_the_decision_price():
    pf = Portfolio(10_000.0)
    assert pf.order_qty_for_target(0.5, 40_000.0) == pytest.approx(5_000 / 40_000)
    pf.apply(FillModel(0, 0).fill(0.125, 40_000.0))
    assert pf.order_qty_for_target(-0.5, 40_000.0) == pytest.approx(-0.25)


def test_invalid_inputs_are_refused():
    with pytest.raises(ConfigError, match="fee_bps"):
        FillModel(fee_bps=-1, slippage_bps=0)
    with pytest.raises(ConfigError, match="initial_cash_usd"):
        Portfolio(0.0)
    with pytest.raises(OperationalError, match="reference_price_usd"):
        FillModel(5, 1).fill(1.0, 0.0)
    with pytest.raises(OperationalError, match="not finite"):
        FillModel(5, 1).fill(float("nan"), 100.0)
