"""RiskControl: drawdown from peak equity, order sizing and pre-trade validation."""

from __future__ import annotations

import dataclasses
import math

from quantnb.errors import ConfigError
from quantnb.live._state import TradingState
from quantnb.live._types import AccountState, MarketRules, Side

__all__ = ["RiskLimits", "RiskControl", "OrderPlan", "MAX_POSITION_FRAC"]

MAX_POSITION_FRAC = 5.0  # the largest position limit, fraction of equity (EnvSpec's bound: an agent trains within it)


@dataclasses.dataclass(frozen=True)
class RiskLimits:
    """Hard limits of a trading session.

    Parameters
    ----------
    max_drawdown_frac : float
        Emergency when equity falls this fraction below its session peak, in (0, 1).
    max_position_frac : float
        Largest position notional as a fraction of equity, in (0, 5] (the agent's environment's bound).

    Raises
    ------
    ConfigError
        If a limit is out of range.
    """

    max_drawdown_frac: float = 0.2
    max_position_frac: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.max_drawdown_frac < 1.0:  # a NaN fails too
            raise ConfigError(f"max_drawdown_frac={self.max_drawdown_frac}: must be in (0, 1), e.g. 0.2 for 20 %")
        if not 0.0 < self.max_position_frac <= MAX_POSITION_FRAC:
            raise ConfigError(f"max_position_frac={self.max_position_frac}: must be in (0, {MAX_POSITION_FRAC:g}], "
                              "e.g. 1.0")


@dataclasses.dataclass(frozen=True, slots=True)
class OrderPlan:
    """An order the risk control sized and validated."""

    side: Side | None  # None: no order needed or allowed
    qty: float  # base units, on the venue's step; 0 with side None
    target_frac: float  # after clipping to max_position_frac
    reason: str = ""  # why no order, or ""


class RiskControl:
    """Track drawdown from peak equity and turn a target fraction into a valid order."""

    def __init__(self, limits: RiskLimits, rules: MarketRules):
        self.limits = limits
        self.rules = rules
        self.peak_equity_usd = math.nan
        self.drawdown_frac = 0.0
        self.max_drawdown_frac_seen = 0.0

    def update_equity(self, equity_usd: float) -> bool:
        """Record ``equity_usd``; return True when the drawdown limit is breached.

        The drawdown is ``1 - equity / max(equity so far)``, the usual peak-to-trough measure
        (e.g. Magdon-Ismail & Atiya, "Maximum drawdown", Risk 17(10), 2004).
        """
        if math.isnan(self.peak_equity_usd) or equity_usd > self.peak_equity_usd:
            self.peak_equity_usd = equity_usd
        self.drawdown_frac = 1.0 - equity_usd / self.peak_equity_usd if self.peak_equity_usd > 0 else 1.0
        self.max_drawdown_frac_seen = max(self.max_drawdown_frac_seen, self.drawdown_frac)
        return self.drawdown_frac >= self.limits.max_drawdown_frac - 1e-12  # "reaches", float-tolerant

    def restore(self, peak_equity_usd: float, max_drawdown_frac_seen: float) -> None:
        """Continue a recorded session's drawdown guard: its peak equity (USDT) and largest drawdown."""
        self.peak_equity_usd = float(peak_equity_usd)
        self.max_drawdown_frac_seen = float(max_drawdown_frac_seen)

    def plan(self, target_frac: float, account: AccountState, price: float, *,
             state: TradingState = TradingState.ACTIVE) -> OrderPlan:
        """Size the order moving the position to ``target_frac`` of equity and validate it.

        Checks, in order: trading state (``HALTED``: nothing; ``REDUCING``: only orders
        that shrink the position), positive equity and price, the position limit
        (the target is clipped to ``±max_position_frac``), the quantity step, and the
        minimum notional (Binance -4164; an order closing the position exactly is exempt,
        as reduce-only orders are). Orders that fail a check become no-orders with a reason.
        """
        lim = self.limits.max_position_frac
        target_frac = min(max(target_frac, -lim), lim)
        if state is TradingState.HALTED:
            return OrderPlan(None, 0.0, target_frac, "trading halted")
        if not (account.equity_usd > 0 and price > 0):
            return OrderPlan(None, 0.0, target_frac, f"equity {account.equity_usd:.2f} USD or price {price} <= 0")
        delta = target_frac * account.equity_usd / price - account.position_qty
        qty = abs(delta)
        qty = self.rules.round_qty(qty)
        if qty <= 0 or qty < self.rules.min_qty:
            return OrderPlan(None, 0.0, target_frac, "change below the quantity step")
        if state is TradingState.REDUCING and (account.position_qty == 0 or delta * account.position_qty > 0
                                               or qty > abs(account.position_qty) + 1e-12):
            return OrderPlan(None, 0.0, target_frac, "trading state reducing: only orders that shrink the position")
        closes_exactly = math.isclose(qty, abs(account.position_qty)) and delta * account.position_qty < 0
        if qty * price < self.rules.min_notional_usd and not closes_exactly:
            return OrderPlan(None, 0.0, target_frac, "change below the minimum notional")
        return OrderPlan("buy" if delta > 0 else "sell", qty, target_frac)
