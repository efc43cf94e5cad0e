"""The one execution-cost model: fees, spread crossing, size-dependent impact (book walk or square root)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from loguru import logger

from quantnb.agent._rules import MarketRules
from quantnb.errors import ConfigError, OperationalError

__all__ = ["BarQuote", "DEFAULT_FEE_BPS", "FeeSchedule", "Fill", "FillModel", "VENUE_FEES", "fit_impact_coef",
           "walk_book"]

_MIN_QTY = 1e-12  # base units; smaller orders are rounding noise and are not sent
_PARKINSON = 1.0 / math.sqrt(4.0 * math.log(2.0))


@dataclass(frozen=True)
class Fill:
    """One executed market order: the one fill type of research, paper trading and the venue brokers.

    Attributes
    ----------
    qty : float
        Signed filled quantity, base units: > 0 bought, < 0 sold (0: nothing filled).
    price_usd : float
        Average fill price after spread, slippage, impact and tick rounding, USD per unit.
    fee_usd : float
        Commission paid, USD (``notional_usd * fee_bps / 1e4`` when simulated).
    reference_price_usd : float or None
        Price the costs are measured from (the fill bar's open, or the book's mid), USD; None
        for a venue's fill.
    impact_usd : float
        Price cost against the reference: ``abs(qty) * abs(price_usd - reference_price_usd)``, USD.
    unfilled_qty : float
        Signed quantity ordered but not filled (partial fill, or a paper order that filled nothing), base units.
    order_id, client_order_id : str
        Venue order id and our id for the order (idempotent resubmission key); ``""`` in research.
    status : str
        ``simulated`` (research), ``paper``, ``paper-none``, or the venue's status (``FILLED``, ...).
    reduce_only : bool
        Whether the order could only reduce a position.
    """

    qty: float
    price_usd: float
    fee_usd: float
    reference_price_usd: float | None = None
    impact_usd: float = 0.0
    unfilled_qty: float = 0.0
    order_id: str = ""
    client_order_id: str = ""
    status: str = "simulated"
    reduce_only: bool = False

    @property
    def side(self) -> str:
        """Return ``"buy"`` or ``"sell"`` (the ordered side, also when nothing filled)."""
        return "buy" if (self.qty or self.unfilled_qty) > 0 else "sell"

    @property
    def notional_usd(self) -> float:
        """Return ``abs(qty) * price_usd``, USD."""
        return abs(self.qty) * self.price_usd


@dataclass(frozen=True)
class FeeSchedule:
    """Maker and taker fees of one venue and tier, bps of notional (``fee_bps`` is the taker fee everywhere)."""

    maker_fee_bps: float
    fee_bps: float
    venue: str = ""


VENUE_FEES: dict[str, FeeSchedule] = {
    # https://www.binance.com/en/fee/futureFee : USD-M futures, VIP 0, USDT: maker 0.0200 %, taker 0.0500 %.
    "binance_usdm": FeeSchedule(2.0, 5.0, "binance_usdm VIP 0"),
    # https://www.bybit.com/en/help-center/article/Trading-Fee-Structure : perpetuals, non-VIP:
    # maker 0.0200 %, taker 0.0550 %.
    "bybit_linear": FeeSchedule(2.0, 5.5, "bybit_linear non-VIP"),
}

#: The one default fee, bps: the taker fee of the venue quantnb trades (Binance USD-M futures, VIP 0,
#: 0.0500 %, https://www.binance.com/en/fee/futureFee). The agent's environment, the paper broker it
#: configures and the loopback Binance server read it, so research pays what live pays.
DEFAULT_FEE_BPS: float = VENUE_FEES["binance_usdm"].fee_bps


@dataclass(frozen=True)
class BarQuote:
    """What one bar tells about the cost of trading now (all optional).

    Attributes
    ----------
    spread_bps : float or None
        Mean quoted spread of the bar (``spread_bps_mean``), bps of mid.
    sigma_frac : float or None
        Volatility over one bar, fraction of price (Parkinson's ``ln(high/low) / sqrt(4 ln 2)``).
    volume_usd : float or None
        Notional traded in the bar, USD.
    bid_depth_usd, ask_depth_usd : float or None
        Resting notional in the top 10 levels per side, USD.
    """

    spread_bps: float | None = None
    sigma_frac: float | None = None
    volume_usd: float | None = None
    bid_depth_usd: float | None = None
    ask_depth_usd: float | None = None

    @classmethod
    def from_bar(cls, high: float, low: float, close: float, volume_usd: float | None = None,
                 spread_bps: float | None = None, bid_depth_qty: float | None = None,
                 ask_depth_qty: float | None = None) -> BarQuote:
        """Build a quote from one bar's columns; missing or non-finite values become None.

        Parameters
        ----------
        high, low, close : float
            Bar prices, USD per unit.
        volume_usd : float, optional
            Bar volume as USD notional.
        spread_bps : float, optional
            ``spread_bps_mean``.
        bid_depth_qty, ask_depth_qty : float, optional
            ``bid_depth_10`` / ``ask_depth_10``, base units (valued at ``close``).
        """
        def ok(v: float | None) -> float | None:
            return float(v) if v is not None and math.isfinite(v) and v >= 0 else None

        sigma = _PARKINSON * math.log(high / low) if high > 0 and low > 0 and high >= low else None
        bd, ad = ok(bid_depth_qty), ok(ask_depth_qty)
        return cls(ok(spread_bps), ok(sigma), ok(volume_usd), None if bd is None else bd * close,
                   None if ad is None else ad * close)


def walk_book(levels: Sequence[tuple[float, float]], qty: float) -> tuple[float, float]:
    """Fill ``qty`` against book levels, best first; return the filled quantity and its average price.

    Parameters
    ----------
    levels : sequence of (price_usd, size) pairs
        The side the order takes (asks for a buy, bids for a sell), best price first; size in base units.
    qty : float
        Unsigned quantity to fill, base units.

    Returns
    -------
    filled_qty : float
        ``min(qty, total size)``, base units.
    avg_price_usd : float
        Size-weighted price of the consumed levels (nan when nothing fills).
    """
    left, cost = qty, 0.0
    for px, size in levels:
        take = min(left, size)
        cost += take * px
        left -= take
        if left <= 0:
            break
    filled = qty - max(left, 0.0)
    return filled, (cost / filled if filled > 0 else math.nan)


def fit_impact_coef(levels: Sequence[tuple[float, float]], mid_usd: float, sigma_frac: float, volume_usd: float,
                    notionals_usd: Sequence[float]) -> float:
    """Fit Y of the square-root law to a recorded book: least squares of walk cost on ``sigma * sqrt(Q / V)``.

    A size's cost is the walk's average price beyond the touch (the half-spread), as a fraction of mid,
    so that ``cross_spread`` and the fitted impact add up to the walk: ``Y = sum(c x) / sum(x x)``.
    """
    if not (sigma_frac > 0 and volume_usd > 0):
        raise ConfigError(f"sigma_frac={sigma_frac!r}, volume_usd={volume_usd!r}: both must be > 0 to fit impact")
    touch = levels[0][0]
    num = den = 0.0
    for n in notionals_usd:
        filled, avg = walk_book(levels, n / mid_usd)
        if filled < n / mid_usd:
            continue
        x = sigma_frac * math.sqrt(n / volume_usd)
        num += abs(avg - touch) / mid_usd * x
        den += x * x
    if den == 0:
        raise ConfigError(f"no size in notionals_usd={list(notionals_usd)} fills against the {len(levels)} levels")
    return num / den


class FillModel:
    """Fill market orders: taker fee, spread crossing, slippage and size-dependent impact.

    The default (``FillModel(fee_bps, slippage_bps)``) is the flat model: a buy pays
    ``ref * (1 + slippage_bps / 1e4)``, a sell receives ``ref * (1 - slippage_bps / 1e4)``, and the
    fee is ``fee_bps / 1e4`` of the filled notional. With a :class:`BarQuote`, ``cross_spread``
    adds half the bar's spread and ``impact_coef`` (Y) adds the square-root impact
    ``Y * sigma * sqrt(notional / volume)`` of the bar. With recorded book levels the order walks
    them instead (price from the book, partial fill where depth runs out). In research and replay
    the reference is the open of the bar after the decision; quotes are the decision bar's.

    Parameters
    ----------
    fee_bps : float
        Taker fee, basis points of notional, >= 0 (see :data:`VENUE_FEES`).
    slippage_bps : float
        Adverse price move per fill, basis points, >= 0.
    maker_fee_bps : float, optional
        Maker fee for resting orders, bps (informational: market orders pay ``fee_bps``).
    cross_spread : bool, default False
        Pay half the quoted spread of the bar on each fill.
    impact_coef : float, default 0.0
        Y of the square-root law, >= 0; 0 switches impact off. Y is of order 1 in the
        literature (Tóth et al. 2011, "Anomalous price impact and the critical nature of
        liquidity in financial markets", PRX 1, 021006; Almgren et al. 2005, "Direct estimation
        of equity market impact", Risk 18(7)).
    capacity_frac : float, default 0.1
        Warn when an order's notional exceeds this share of the depth it takes from.

    Raises
    ------
    ConfigError
        If a parameter is negative or not finite.
    """

    def __init__(self, fee_bps: float, slippage_bps: float, *, maker_fee_bps: float | None = None,
                 cross_spread: bool = False, impact_coef: float = 0.0, capacity_frac: float = 0.1) -> None:
        for name, v in (("fee_bps", fee_bps), ("slippage_bps", slippage_bps),
                        ("maker_fee_bps", fee_bps if maker_fee_bps is None else maker_fee_bps)):
            if not (math.isfinite(v) and 0 <= v < 1e4):
                raise ConfigError(f"{name}={v!r}: must be in [0, 10000) basis points")
        if not (math.isfinite(impact_coef) and impact_coef >= 0):
            raise ConfigError(f"impact_coef={impact_coef!r}: must be >= 0 (0 switches impact off)")
        if not (math.isfinite(capacity_frac) and capacity_frac > 0):
            raise ConfigError(f"capacity_frac={capacity_frac!r}: must be > 0")
        self.fee_bps = float(fee_bps)
        self.slippage_bps = float(slippage_bps)
        self.maker_fee_bps = self.fee_bps if maker_fee_bps is None else float(maker_fee_bps)
        self.cross_spread = bool(cross_spread)
        self.impact_coef = float(impact_coef)
        self.capacity_frac = float(capacity_frac)

    @classmethod
    def for_venue(cls, venue: str, slippage_bps: float = 0.0, **kw: float | bool) -> FillModel:
        """Return a model with the taker and maker fees of ``venue`` (a key of :data:`VENUE_FEES`).

        Parameters
        ----------
        venue : str
            ``"binance_usdm"`` or ``"bybit_linear"``.
        slippage_bps : float, default 0.0
            Adverse price move per fill, bps.
        **kw
            ``cross_spread``, ``impact_coef``, ``capacity_frac`` (see the class).

        Returns
        -------
        FillModel

        Raises
        ------
        ConfigError
            If the venue is not tabled.
        """
        if venue not in VENUE_FEES:
            raise ConfigError(f"venue={venue!r} has no fee table; use one of {sorted(VENUE_FEES)} or pass fee_bps")
        f = VENUE_FEES[venue]
        return cls(f.fee_bps, slippage_bps, maker_fee_bps=f.maker_fee_bps, **kw)  # type: ignore[arg-type]

    def replace(self, **changes: float | bool) -> FillModel:
        """Return a copy with some settings changed (e.g. a session's ``fee_bps`` override).

        Parameters
        ----------
        **changes
            Constructor arguments to change (``fee_bps``, ``slippage_bps``, ``cross_spread``, ...).
        """
        kw: dict[str, float | bool] = {"fee_bps": self.fee_bps, "slippage_bps": self.slippage_bps,
                                       "maker_fee_bps": self.maker_fee_bps, "cross_spread": self.cross_spread,
                                       "impact_coef": self.impact_coef, "capacity_frac": self.capacity_frac}
        kw.update(changes)
        return FillModel(**kw)  # type: ignore[arg-type]

    @property
    def uses_quotes(self) -> bool:
        """Return True when fills depend on the bar's quote (spread or impact switched on)."""
        return self.cross_spread or self.impact_coef > 0

    def fill_price(self, qty: float, reference_price_usd: float, quote: BarQuote | None = None) -> float:
        """Return the price a market order of signed ``qty`` fills at, USD per unit.

        Parameters
        ----------
        qty : float
            Signed order size, base units; > 0 buys.
        reference_price_usd : float
            Price before costs, USD per unit.
        quote : BarQuote, optional
            Spread, volatility and volume of the decision bar (used when switched on).

        Returns
        -------
        float
            ``reference * (1 + slippage_bps / 1e4)`` for a buy, ``(1 - ...)`` for a sell, times the
            half-spread and square-root impact factors when switched on and quoted.
        """
        slip = self.slippage_bps / 1e4
        px = reference_price_usd * (1.0 + slip) if qty > 0 else reference_price_usd * (1.0 - slip)
        if quote is None:
            return px
        extra = 0.0
        if self.cross_spread and quote.spread_bps is not None:
            extra += quote.spread_bps / 2e4
        if self.impact_coef > 0 and quote.sigma_frac is not None and quote.volume_usd:
            extra += self.impact_coef * quote.sigma_frac * math.sqrt(abs(qty) * reference_price_usd / quote.volume_usd)
        return px * (1.0 + extra) if qty > 0 else px * (1.0 - extra)

    def fill(self, qty: float, reference_price_usd: float, *, quote: BarQuote | None = None,
             book: Sequence[tuple[float, float]] | None = None, rules: MarketRules | None = None) -> Fill | None:
        """Fill a market order.

        Parameters
        ----------
        qty : float
            Signed order quantity, base units (> 0 buy, < 0 sell).
        reference_price_usd : float
            Price before costs (the next bar's open, or the book's mid), USD per unit, > 0.
        quote : BarQuote, optional
            The decision bar's spread, volatility, volume and depth.
        book : sequence of (price_usd, size), optional
            Recorded levels of the side taken, best first: the order walks them (slippage and
            quote impact are not added) and fills partially where they run out.
        rules : MarketRules, optional
            The model price (not a book walk, whose levels are on the tick already) is rounded to
            ``rules.tick_size`` against the trader (:meth:`MarketRules.round_fill_price`).

        Returns
        -------
        Fill or None
            None when ``abs(qty) < 1e-12`` or the book fills nothing.

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
        unfilled = 0.0
        depth_usd: float | None
        if book is not None:
            filled, price = walk_book(book, abs(qty))
            if filled < _MIN_QTY:
                return None
            depth_usd = sum(p * s for p, s in book)
            unfilled, qty = math.copysign(abs(qty) - filled, qty), math.copysign(filled, qty)
            if unfilled:
                logger.warning("costs: book depth filled {:.8g} of {:.8g}; the rest is not filled",
                               filled, filled + abs(unfilled))
        else:
            price = self.fill_price(qty, reference_price_usd, quote)
            if rules is not None:
                price = rules.round_fill_price(price, qty)
            depth_usd = None if quote is None else (quote.ask_depth_usd if qty > 0 else quote.bid_depth_usd)
        notional = abs(qty) * price
        if depth_usd and notional > self.capacity_frac * depth_usd:
            logger.warning("costs: order of {:.0f} USD is {:.1f}x the capacity share {} of {:.0f} USD depth",
                           notional, notional / (self.capacity_frac * depth_usd), self.capacity_frac, depth_usd)
        impact = abs(qty) * abs(price - reference_price_usd)
        return Fill(qty, price, notional * self.fee_bps / 1e4, reference_price_usd, impact, unfilled)

    def __repr__(self) -> str:
        return (f"FillModel(fee_bps={self.fee_bps}, slippage_bps={self.slippage_bps}, "
                f"cross_spread={self.cross_spread}, impact_coef={self.impact_coef})")
