"""Fill model and portfolio accounting shared by the environment and the paper broker."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from quantnb.errors import ConfigError, OperationalError
from quantnb.rl._observation import PortfolioState

_MIN_QTY = 1e-12  # base units; smaller orders are rounding noise and are not sent


@dataclass(frozen=True)
class Fill:
    """One executed market order.

    Attributes
    ----------
    qty : float
        Signed quantity, base units: > 0 bought, < 0 sold.
    price_usd : float
        Fill price after slippage, USD per unit.
    reference_price_usd : float
        Price the order was filled against before slippage (the next bar's open), USD.
    notional_usd : float
        ``abs(qty) * price_usd``.
    fee_usd : float
        ``notional_usd * fee_bps / 1e4``.
    """

    qty: float
    price_usd: float
    reference_price_usd: float
    notional_usd: float
    fee_usd: float

    @property
    def side(self) -> str:
        """Return ``"buy"`` or ``"sell"``."""
        return "buy" if self.qty > 0 else "sell"


class FillModel:
    """Fill market orders at a reference price with proportional slippage and fee.

    A buy pays ``ref * (1 + slippage_bps / 1e4)``, a sell receives ``ref * (1 - slippage_bps
    / 1e4)``; the fee is ``fee_bps / 1e4`` of the filled notional, paid in USD. In research
    and replay the reference is the open of the bar after the decision.

    Parameters
    ----------
    fee_bps : float
        Taker fee, basis points of notional, >= 0 (Binance USD-M taker: 5 bps at VIP 0 as of 2024).
    slippage_bps : float
        Adverse price move per fill, basis points, >= 0.

    Raises
    ------
    ConfigError
        If a parameter is negative or not finite.
    """

    def __init__(self, fee_bps: float, slippage_bps: float) -> None:
        for name, v in (("fee_bps", fee_bps), ("slippage_bps", slippage_bps)):
            if not (math.isfinite(v) and 0 <= v < 1e4):
                raise ConfigError(f"{name}={v!r}: must be in [0, 10000) basis points")
        self.fee_bps = float(fee_bps)
        self.slippage_bps = float(slippage_bps)

    def fill_price(self, qty: float, reference_price_usd: float) -> float:
        """Return the price a market order of signed ``qty`` fills at, USD per unit.

        Parameters
        ----------
        qty : float
            Signed order size, base units; > 0 buys.
        reference_price_usd : float
            Price before slippage, USD per unit.

        Returns
        -------
        float
            ``reference * (1 + slippage_bps / 1e4)`` for a buy, ``(1 - ...)`` for a sell.
        """
        slip = self.slippage_bps / 1e4
        return reference_price_usd * (1.0 + slip) if qty > 0 else reference_price_usd * (1.0 - slip)

    def fill(self, qty: float, reference_price_usd: float) -> Fill | None:
        """Fill a market order.

        Parameters
        ----------
        qty : float
            Signed order quantity, base units (> 0 buy, < 0 sell).
        reference_price_usd : float
            Price before slippage (the next bar's open), USD per unit, > 0.

        Returns
        -------
        Fill or None
            None when ``abs(qty) < 1e-12`` (nothing to do).

        Raises
        ------
        OperationalError
            If the reference price is not positive and finite (a bad bar: do not trade on it).
        """
        if not (math.isfinite(reference_price_usd) and reference_price_usd > 0):
            raise OperationalError(f"reference_price_usd={reference_price_usd!r}: cannot fill at a non-positive price")
        if not math.isfinite(qty):
            raise OperationalError(f"order qty={qty!r} is not finite; refusing to send it")
        if abs(qty) < _MIN_QTY:
            return None
        price = self.fill_price(qty, reference_price_usd)
        notional = abs(qty) * price
        return Fill(qty, price, reference_price_usd, notional, notional * self.fee_bps / 1e4)


class Portfolio:
    """Cash-and-position accounting of one linear USD-margined instrument.

    Cash moves by ``-qty * price - fee`` on each fill, so ``equity = cash + qty * mark`` equals
    ``initial + realised PnL + unrealised PnL - fees`` for longs and shorts alike (a perpetual's
    margin accounting without funding, which is not modelled).

    Parameters
    ----------
    initial_cash_usd : float
        Starting equity, USD, > 0.

    Attributes
    ----------
    cash_usd, position_qty, avg_entry_price_usd, realized_pnl_usd, fees_paid_usd, traded_notional_usd : float
    n_trades : int
        Number of fills.
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

    def equity(self, mark_price_usd: float) -> float:
        """Return equity marked at ``mark_price_usd``, USD.

        Parameters
        ----------
        mark_price_usd : float
            Mark price, USD per unit.

        Returns
        -------
        float
            Cash plus the position marked at ``mark_price_usd``, USD.
        """
        return self.cash_usd + self.position_qty * mark_price_usd

    def unrealized_pnl(self, mark_price_usd: float) -> float:
        """Return the open position's PnL at ``mark_price_usd``, USD (fees excluded).

        Parameters
        ----------
        mark_price_usd : float
            Mark price, USD per unit.

        Returns
        -------
        float
            ``position * (mark - average entry)``, USD; 0 when flat.
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
        self.n_trades += 1

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

        Returns
        -------
        Portfolio
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
