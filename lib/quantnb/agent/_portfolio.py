"""Portfolio accounting shared by the environment and the paper broker (fills: :mod:`quantnb.agent._costs`)."""

from __future__ import annotations

import math
from typing import Any

from quantnb.agent._costs import _MIN_QTY, Fill
from quantnb.agent._observation import PortfolioState
from quantnb.agent._perp import MarginTier, liquidation_price_usd, maintenance_margin_usd
from quantnb.errors import ConfigError

__all__ = ["Portfolio"]


class Portfolio:
    """Cash-and-position accounting of one linear USD-margined instrument.

    Cash moves by ``-qty * price - fee`` on each fill, so ``equity = cash + qty * mark`` equals
    ``initial + realised PnL + unrealised PnL - fees - funding`` for longs and shorts alike (a
    perpetual's cross-margin accounting): :meth:`pay_funding` books funding at each settlement and
    :meth:`liquidate_if_breached` closes the position where equity falls to the maintenance margin.

    Parameters
    ----------
    initial_cash_usd : float
        Starting equity, USD, > 0.

    Attributes
    ----------
    cash_usd, position_qty, avg_entry_price_usd, realized_pnl_usd, fees_paid_usd, traded_notional_usd : float
    impact_paid_usd, funding_paid_usd : float
        Price costs of fills against their reference, and funding paid (< 0: received), USD.
    n_trades, n_liquidations : int
        Number of fills and of liquidations.
    """

    def __init__(self, initial_cash_usd: float) -> None:
        if not (math.isfinite(initial_cash_usd) and initial_cash_usd > 0):
            raise ConfigError(f"initial_cash_usd={initial_cash_usd!r}: must be a positive amount of USD")
        self.initial_cash_usd = float(initial_cash_usd)
        self.cash_usd = float(initial_cash_usd)
        self.position_qty = 0.0
        self.avg_entry_price_usd = 0.0
        self.realized_pnl_usd = 0.0
        self.fees_paid_usd = 0.0
        self.traded_notional_usd = 0.0
        self.n_trades = 0
        self.impact_paid_usd = 0.0
        self.funding_paid_usd = 0.0
        self.n_liquidations = 0

    def equity(self, mark_price_usd: float) -> float:
        """Return equity, USD: cash plus the position marked at ``mark_price_usd``.

        Parameters
        ----------
        mark_price_usd : float
            Mark price, USD per unit.
        """
        return self.cash_usd + self.position_qty * mark_price_usd

    def unrealized_pnl(self, mark_price_usd: float) -> float:
        """Return the open position's PnL, USD: ``position * (mark - average entry)``, 0 when flat, fees excluded.

        Parameters
        ----------
        mark_price_usd : float
            As in :meth:`equity`.
        """
        return self.position_qty * (mark_price_usd - self.avg_entry_price_usd) if self.position_qty else 0.0

    def state(self, mark_price_usd: float, initial_equity_usd: float | None = None) -> PortfolioState:
        """Return the observation's account part marked at ``mark_price_usd``.

        Parameters
        ----------
        mark_price_usd : float
            Usually the last close, USD per unit.
        initial_equity_usd : float, optional
            Denominator of ``equity_ratio``; defaults to ``initial_cash_usd``.

        Returns
        -------
        PortfolioState
            ``position_frac``, ``unrealized_pnl_frac`` and ``equity_ratio`` at ``mark_price_usd``.

        Raises
        ------
        OperationalError
            If equity is not positive.
        """
        return PortfolioState.from_account(
            position_qty=self.position_qty,
            avg_entry_price_usd=self.avg_entry_price_usd,
            equity_usd=self.equity(mark_price_usd),
            initial_equity_usd=self.initial_cash_usd if initial_equity_usd is None else initial_equity_usd,
            mark_price_usd=mark_price_usd,
        )

    def order_qty_for_target(self, target_frac: float, price_usd: float) -> float:
        """Return the signed order quantity that moves the position to ``target_frac`` of equity.

        Sized at the decision price (the last close, all a live trader knows), so research
        and live send the same quantity; the fill then happens at the next open.

        Parameters
        ----------
        target_frac : float
            Target notional over equity (from :class:`ActionInterpreter`).
        price_usd : float
            Decision price, USD per unit, > 0.

        Returns
        -------
        float
            ``target_frac * equity(price) / price - position_qty``, base units.
        """
        return target_frac * self.equity(price_usd) / price_usd - self.position_qty

    def apply(self, fill: Fill) -> None:
        """Book ``fill``: cash, position, average entry, realised PnL, fees and trade count.

        Parameters
        ----------
        fill : Fill
            A fill from :meth:`FillModel.fill` (signed quantity, price and fee in USD).
        """
        pos, qty, px = self.position_qty, fill.qty, fill.price_usd
        new_pos = pos + qty
        if pos == 0 or (pos > 0) == (qty > 0):  # open or add
            self.avg_entry_price_usd = (pos * self.avg_entry_price_usd + qty * px) / new_pos
        else:  # reduce, close or flip
            closed = min(abs(qty), abs(pos))
            self.realized_pnl_usd += closed * math.copysign(1.0, pos) * (px - self.avg_entry_price_usd)
            if abs(new_pos) < _MIN_QTY:
                new_pos, self.avg_entry_price_usd = 0.0, 0.0
            elif (new_pos > 0) != (pos > 0):
                self.avg_entry_price_usd = px
        self.position_qty = new_pos
        self.cash_usd -= qty * px + fill.fee_usd
        self.fees_paid_usd += fill.fee_usd
        self.traded_notional_usd += fill.notional_usd
        self.impact_paid_usd += fill.impact_usd
        self.n_trades += 1

    def pay_funding(self, rate: float, mark_price_usd: float) -> float:
        """Book one funding settlement: the position pays ``qty * mark * rate`` (longs pay when rate > 0).

        Parameters
        ----------
        rate : float
            Funding rate of the interval, fraction (0.0001 = 0.01 %).
        mark_price_usd : float
            Mark price at the settlement, USD per unit.

        Returns
        -------
        float
            The amount paid, USD (< 0: received); Binance/Bybit "funding fee = position value x rate".
        """
        amount = self.position_qty * mark_price_usd * rate
        self.cash_usd -= amount
        self.funding_paid_usd += amount
        return amount

    def liquidate_if_breached(self, low_usd: float, high_usd: float, tiers: tuple[MarginTier, ...]) -> float | None:
        """Close the position at its liquidation price if the bar's range reached it.

        The liquidation price is where equity equals the maintenance margin of the venue's
        bracket (:func:`quantnb.agent._perp.liquidation_price_usd`); the position is closed there
        (no fee), leaving that maintenance margin as equity. A gap through the price is
        closed at the liquidation price too (the venue's insurance fund takes the gap).

        Parameters
        ----------
        low_usd, high_usd : float
            The bar's low and high (a long is hit at the low, a short at the high), USD per unit.
        tiers : tuple of MarginTier
            The symbol's maintenance-margin brackets.

        Returns
        -------
        float or None
            The liquidation price, USD per unit, or None when not liquidated.
        """
        q = self.position_qty
        if not q:
            return None
        p = liquidation_price_usd(self.cash_usd, q, tiers)
        if math.isnan(p) or (q > 0 and low_usd > p) or (q < 0 and high_usd < p):
            return None
        self.realized_pnl_usd += q * (p - self.avg_entry_price_usd)
        self.cash_usd += q * p
        self.position_qty, self.avg_entry_price_usd = 0.0, 0.0
        self.n_liquidations += 1
        return p

    def maintenance_margin(self, mark_price_usd: float, tiers: tuple[MarginTier, ...]) -> float:
        """Return the position's maintenance margin at ``mark_price_usd``, USD (see :mod:`quantnb.agent._perp`).

        Parameters
        ----------
        mark_price_usd : float
            Mark price, USD per unit.
        tiers : tuple of MarginTier
            The symbol's brackets.
        """
        return maintenance_margin_usd(abs(self.position_qty) * mark_price_usd, tiers)

    def cost_summary(self) -> dict[str, float]:
        """Return ``cost_bps`` (fees + impact per traded notional), ``fees_usd``, ``impact_usd``, ``funding_usd``."""
        paid = self.fees_paid_usd + self.impact_paid_usd
        bps = paid / self.traded_notional_usd * 1e4 if self.traded_notional_usd > 0 else 0.0
        return {"cost_bps": bps, "fees_usd": self.fees_paid_usd, "impact_usd": self.impact_paid_usd,
                "funding_usd": self.funding_paid_usd}

    def to_dict(self) -> dict[str, Any]:
        """Return the full state as a JSON-ready dict (for checkpoints and audit)."""
        return dict(vars(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Portfolio:
        """Rebuild a portfolio from :meth:`to_dict` output.

        Parameters
        ----------
        data : dict of str to Any
            Field names to values.
        """
        p = cls(data["initial_cash_usd"])
        for k, v in data.items():
            setattr(p, k, v)
        return p

    def __repr__(self) -> str:
        return (
            f"Portfolio(cash_usd={self.cash_usd:.2f}, position_qty={self.position_qty:.8f}, "
            f"fees_paid_usd={self.fees_paid_usd:.2f}, n_trades={self.n_trades})"
        )
