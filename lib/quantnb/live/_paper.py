"""PaperBroker: simulated fills through the research fill model and portfolio (quantnb.agent)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

from quantnb.agent import BarQuote, Fill, FillModel, FundingRates, MarginTier, Portfolio, settlements_between
from quantnb.errors import ConfigError, OperationalError
from quantnb.live._broker import Broker
from quantnb.live._types import AccountState, Bar, MarketRules, Side

__all__ = ["PaperBroker"]


class PaperBroker(Broker):
    """Fill market orders on paper exactly as the training environment does.

    An order sent on a closed candle fills at the next candle's open (``Bar.next_open``,
    given by :meth:`on_bar`; the close when there is none) with the fill model's slippage
    and fee, and is booked in a :class:`quantnb.agent.Portfolio`; equity is marked at the
    close. Replay sessions therefore see the same account, fill for fill, as the
    environment's evaluation.

    Parameters
    ----------
    symbol : str
        Name of the traded symbol (labels only).
    initial_cash_usd : float
        Starting equity, USD, > 0.
    fill_model : quantnb.agent.FillModel
        Fee and slippage (usually the agent bundle's).
    rules : MarketRules, optional
        Quantity step and minimum notional to enforce (:meth:`MarketRules.admit`, as the
        environment's ``market_rules``); none by default (as in training).
    funding : FundingRates, optional
        Perpetual funding, paid as the environment pays it (needs :meth:`on_bar` ``bar=``).
    margin_tiers : tuple of MarginTier, optional
        Maintenance-margin brackets: a bar whose range reaches the liquidation price closes the position.
    bar_interval_ms : int, default 60_000
        Candle length: the settlements paid on a candle are those in ``(open_time, open_time + interval]``.
    latency_bars : int, default 0
        An order sent on candle ``t`` fills at the open of candle ``t + 1 + latency_bars`` (booked at the
        start of :meth:`on_bar` of candle ``t + 1 + latency_bars``, with candle ``t``'s quote), as the
        environment's ``latency_bars``; :meth:`market_order` then returns a fill of 0 with the order as
        ``unfilled_qty`` (status ``paper-pending``) and :meth:`in_flight_qty` counts it for sizing.
        :meth:`close_position` flattens at once.

    Attributes
    ----------
    portfolio : quantnb.agent.Portfolio
        The booked cash, position, fees and trades.
    """

    cheap_account = True

    def __init__(self, symbol: str, initial_cash_usd: float, fill_model: FillModel, *,
                 rules: MarketRules | None = None, funding: FundingRates | None = None,
                 margin_tiers: tuple[MarginTier, ...] | None = None, bar_interval_ms: int = 60_000,
                 latency_bars: int = 0):
        if not (isinstance(latency_bars, int) and latency_bars >= 0):
            raise ConfigError(f"latency_bars={latency_bars!r}: must be an integer >= 0 (0 = fill at the next open)")
        self.latency_bars = latency_bars
        self._in_flight: list[tuple[int, float, BarQuote | None]] = []  # (candle no. due, signed qty, quote)
        self._bar_no = 0  # candles seen through on_bar
        self.symbol = symbol
        self.rules = rules or MarketRules()
        self.fill_model = fill_model
        self.funding, self.margin_tiers, self.bar_interval_ms = funding, margin_tiers, int(bar_interval_ms)
        self.portfolio = Portfolio(initial_cash_usd)
        self._quote: BarQuote | None = None
        self._settled_to: dt.datetime | None = None  # funding settled up to here
        self._mark = math.nan
        self._exec_price = math.nan
        self._next_id = 1

    def on_bar(self, close_price: float, next_open: float | None, *, bar: Bar | None = None) -> None:
        """Mark equity at ``close_price``; fill later orders at ``next_open`` (or the close).

        A price that is not finite and positive is ignored (the last valid one stays), so an
        emergency close can always fill at the last valid price. With ``bar``, in the
        environment's order: funding for settlements missed in a gap (at the bar's open), a
        liquidation if the bar's range reached the liquidation price, then funding for the
        settlements in ``(open_time, open_time + interval]`` marked at the fill price, then the
        bar's :class:`quantnb.agent.BarQuote` for the next orders.

        Parameters
        ----------
        close_price : float
            The candle's close, USDT per base unit; marks equity.
        next_open : float or None
            The next candle's open (the fill price of orders sent now); None or invalid: the close.
        bar : Bar, optional
            The candle itself (range, volume, book extras and open time).
        """
        if not (math.isfinite(close_price) and close_price > 0):
            return
        self._bar_no += 1
        for _, qty, quote in [o for o in self._in_flight if o[0] == self._bar_no]:  # fill at the open of this bar
            fill = self.fill_model.fill(qty, self._exec_price, quote=quote, rules=self._tick_rules)
            if fill is not None:
                self.portfolio.apply(fill)
        self._in_flight = [o for o in self._in_flight if o[0] > self._bar_no]
        self._mark = close_price
        ok_next = next_open is not None and math.isfinite(next_open) and next_open > 0
        self._exec_price = next_open if next_open is not None and ok_next else close_price
        if bar is None:
            return
        pf = self.portfolio
        t0 = dt.datetime.fromtimestamp(bar.open_time_ms / 1000, dt.UTC)
        t1 = t0 + dt.timedelta(milliseconds=self.bar_interval_ms)
        if self.funding is not None and pf.position_qty and self._settled_to is not None:
            for s in settlements_between(self._settled_to, t0):  # missed in a gap: the first price after is the open
                pf.pay_funding(self.funding.rate_at(s), bar.open)
        if self.margin_tiers is not None:
            pf.liquidate_if_breached(bar.low, bar.high, self.margin_tiers)
        if self.funding is not None and pf.position_qty:
            for s in settlements_between(t0, t1):
                pf.pay_funding(self.funding.rate_at(s), self._exec_price)
        self._settled_to = t1
        if self.fill_model.uses_quotes:
            ex = bar.extras or {}
            self._quote = BarQuote.from_bar(bar.high, bar.low, bar.close, bar.volume, ex.get("spread_bps_mean"),
                                            ex.get("bid_depth_10"), ex.get("ask_depth_10"))

    def snapshot(self) -> dict[str, Any]:
        """Return the portfolio (cash, position, entry price, fees, realized PnL, trades) and the orders in flight."""
        p = self.portfolio
        return {"initial_cash_usd": p.initial_cash_usd, "cash_usd": p.cash_usd, "position_qty": p.position_qty,
                "avg_entry_price_usd": p.avg_entry_price_usd, "realized_pnl_usd": p.realized_pnl_usd,
                "fees_paid_usd": p.fees_paid_usd, "traded_notional_usd": p.traded_notional_usd,
                "n_trades": p.n_trades, "next_order_id": self._next_id, "impact_paid_usd": p.impact_paid_usd,
                "funding_paid_usd": p.funding_paid_usd, "n_liquidations": p.n_liquidations,
                "in_flight": [[due - self._bar_no, q, None if quote is None else dataclasses.asdict(quote)]
                              for due, q, quote in self._in_flight]}

    def restore(self, snap: dict[str, Any], last_close: float | None) -> None:
        """Load a :meth:`snapshot` and mark the account at ``last_close`` (a resumed session).

        Parameters
        ----------
        snap : dict of str to Any
            A :meth:`snapshot` (keys ``initial_cash_usd``, ``cash_usd``, ``position_qty``,
            ``avg_entry_price_usd``, ``realized_pnl_usd``, ``fees_paid_usd``,
            ``traded_notional_usd``, ``n_trades`` and optionally ``next_order_id``).
        last_close : float or None
            Last close seen, USDT per base unit; None leaves the account unmarked.

        Raises
        ------
        KeyError
            If ``snap`` lacks one of the required keys.
        """
        p = self.portfolio
        for key in ("initial_cash_usd", "cash_usd", "position_qty", "avg_entry_price_usd", "realized_pnl_usd",
                    "fees_paid_usd", "traded_notional_usd"):
            setattr(p, key, float(snap[key]))
        p.n_trades = int(snap["n_trades"])
        p.impact_paid_usd = float(snap.get("impact_paid_usd", 0.0))
        p.funding_paid_usd = float(snap.get("funding_paid_usd", 0.0))
        p.n_liquidations = int(snap.get("n_liquidations", 0))
        self._next_id = int(snap.get("next_order_id", 1))
        self._in_flight = [(self._bar_no + int(k), float(q), None if quote is None else BarQuote(**quote))
                           for k, q, quote in snap.get("in_flight", [])]  # bars still to wait, as counted on save
        if last_close is not None and math.isfinite(last_close) and last_close > 0:
            self._mark = self._exec_price = last_close  # marks without counting a bar (orders in flight wait)

    def account(self) -> AccountState:
        """Return the paper account marked at the last close.

        Raises
        ------
        OperationalError
            If no candle has been seen yet (nothing to mark the position at).
        """
        p = self.portfolio
        mark = self._mark
        if math.isnan(mark):
            if p.position_qty:
                raise OperationalError("paper account has a position but no price yet; call on_bar first")
            mark = 0.0
        return AccountState(balance_usd=p.initial_cash_usd + p.realized_pnl_usd - p.fees_paid_usd - p.funding_paid_usd,
                            equity_usd=p.equity(mark), position_qty=p.position_qty,
                            entry_price=p.avg_entry_price_usd, mark_price=mark)

    def positions(self) -> dict[str, float]:
        """Return ``{symbol: qty}`` when a position is open, else ``{}``."""
        return {self.symbol: self.portfolio.position_qty} if self.portfolio.position_qty else {}

    def market_order(self, side: Side, qty: float, *, reduce_only: bool = False,
                     client_order_id: str | None = None) -> Fill:
        """Fill at the execution price with slippage and fee; see :meth:`Broker.market_order`.

        Parameters
        ----------
        side : {"buy", "sell"}
            Order side.
        qty : float
            Quantity, base units; > 0.
        reduce_only : bool, default False
            Refuse an order that would grow the position.
        client_order_id : str, optional
            Recorded on the fill; a sequential paper id when None.

        Raises
        ------
        OperationalError
            If no candle has been seen, the quantity is not positive, a reduce-only order
            would grow the position, or the rounded order is below the market rules' minimums.
        """
        if math.isnan(self._exec_price):
            raise OperationalError("paper order before any candle: no price to fill at")
        if not qty > 0:
            raise OperationalError(f"paper order qty={qty!r}: must be > 0")
        signed = qty if side == "buy" else -qty
        pos = self.portfolio.position_qty
        if reduce_only:
            if pos == 0 or (pos > 0) == (signed > 0):
                raise OperationalError(f"reduce-only {side} {qty} rejected: position is {pos}")
            signed = math.copysign(min(qty, abs(pos)), signed)
        if self.rules != MarketRules():
            flying = self.in_flight_qty()
            signed, why = self.rules.admit(signed, self._mark, pos + flying)  # at the decision price, as the env
            if why:
                raise OperationalError(f"paper {side} {qty} refused by the market rules: {why} ({self.rules})")
        oid = str(self._next_id)
        self._next_id += 1
        cid = client_order_id or f"paper-{oid}"
        if self.latency_bars and not reduce_only:
            self._in_flight.append((self._bar_no + 1 + self.latency_bars, signed, self._quote))
            return Fill(0.0, self._exec_price, 0.0, self._exec_price, unfilled_qty=signed, order_id=oid,
                        client_order_id=cid, status="paper-pending")
        fill = self.fill_model.fill(signed, self._exec_price, quote=self._quote, rules=self._tick_rules)
        if fill is None:
            return Fill(0.0, self._exec_price, 0.0, self._exec_price, unfilled_qty=signed, order_id=oid,
                        client_order_id=cid, status="paper-none", reduce_only=reduce_only)
        self.portfolio.apply(fill)
        return dataclasses.replace(fill, order_id=oid, client_order_id=cid, status="paper", reduce_only=reduce_only)

    @property
    def _tick_rules(self) -> MarketRules | None:
        return self.rules if self.rules.tick_size > 0 else None

    def funding_paid_usd(self) -> float:
        """Return the funding the paper portfolio paid so far, USD (< 0: received)."""
        return self.portfolio.funding_paid_usd

    def in_flight_qty(self) -> float:
        """Return the signed quantity of orders sent but not yet filled (``latency_bars`` > 0), base units."""
        return sum(q for _, q, _ in self._in_flight)

    def cancel_all(self) -> int:
        """Cancel the orders in flight (``latency_bars``); return how many there were."""
        n, self._in_flight = len(self._in_flight), []
        return n

    def close_position(self, symbol: str, qty: float, *, client_order_id: str | None = None) -> Fill:
        """Flatten the paper position with a reduce-only market order at the last valid price.

        Parameters
        ----------
        symbol : str
            Ignored (the paper broker trades one symbol).
        qty : float
            Signed position to flatten, base units (> 0 long: sells; < 0 short: buys).
        client_order_id : str, optional
            Recorded on the fill.

        Raises
        ------
        OperationalError
            If no candle has been seen yet, ``qty`` is 0, or there is no position to reduce.
        """
        return self.market_order("sell" if qty > 0 else "buy", abs(qty), reduce_only=True,
                                 client_order_id=client_order_id)
