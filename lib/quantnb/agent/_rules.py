"""Venue order rules (tick size, lot step, minimum quantity and notional): one owner for research and live."""

from __future__ import annotations

import dataclasses
import math

from quantnb.errors import ConfigError

__all__ = ["MarketRules", "VENUE_RULES"]


def _decimals(step: float) -> int:
    """Decimals that represent multiples of ``step`` exactly (plus two guard digits)."""
    return max(0, -math.floor(math.log10(step))) + 2


@dataclasses.dataclass(frozen=True, slots=True)
class MarketRules:
    """Exchange rules an order must meet, applied identically by the environment and every broker.

    Attributes
    ----------
    qty_step : float
        Quantity increment (Binance ``LOT_SIZE.stepSize``, Bybit ``lotSizeFilter.qtyStep``);
        0 = any quantity.
    min_qty : float
        Smallest quantity (``LOT_SIZE.minQty``), base units.
    min_notional_usd : float
        Smallest order notional (``MIN_NOTIONAL.notional``), USDT; an order that closes the
        position exactly is exempt (Binance error -4164 exempts reduce-only orders).
    tick_size : float
        Price increment (``PRICE_FILTER.tickSize``), USDT; 0 = any price.

    References
    ----------
    Binance USD-M Futures, "Exchange Information" (symbol filters) and "Error Codes" -4164;
    Bybit v5 "Get Instruments Info" (``priceFilter``, ``lotSizeFilter``).
    """

    qty_step: float = 0.0
    min_qty: float = 0.0
    min_notional_usd: float = 0.0
    tick_size: float = 0.0

    @classmethod
    def for_venue(cls, venue: str, symbol: str) -> MarketRules:
        """Return the tabled rules of ``symbol`` on ``venue`` (see :data:`VENUE_RULES`).

        Parameters
        ----------
        venue : str
            ``"binance_usdm"`` or ``"bybit_linear"``.
        symbol : str
            Venue symbol id, e.g. ``"BTCUSDT"``.

        Raises
        ------
        ConfigError
            If the pair is not in the table (pass ``MarketRules(...)`` from the venue's exchange info).
        """
        try:
            return VENUE_RULES[(venue, symbol.replace("/", "").split(":")[0].upper())]
        except KeyError:
            raise ConfigError(f"no tabled market rules for venue={venue!r} symbol={symbol!r}; known: "
                              f"{sorted(VENUE_RULES)}; pass MarketRules(...) from exchange info") from None

    def round_qty(self, qty: float) -> float:
        """Round a quantity toward zero to the lot step, keeping its sign.

        Parameters
        ----------
        qty : float
            Signed quantity, base units.

        Returns
        -------
        float
            ``sign(qty) * floor(|qty| / qty_step) * qty_step`` (``qty`` itself when the step is 0).
        """
        step = self.qty_step
        if step <= 0:
            return qty
        q = math.floor(abs(qty) / step + 1e-9) * step
        return math.copysign(round(q, _decimals(step)), qty) if q else 0.0

    def round_price(self, price_usd: float) -> float:
        """Round a price to the nearest tick, USDT (``price_usd`` itself when the tick is 0).

        Parameters
        ----------
        price_usd : float
            Price, USDT per unit.
        """
        t = self.tick_size
        return round(round(price_usd / t) * t, _decimals(t)) if t > 0 else price_usd

    def round_fill_price(self, price_usd: float, qty: float) -> float:
        """Round a simulated fill price to the tick against the trader: a buy up, a sell down, USDT.

        A venue fills a market order at resting prices, which lie on the tick grid: a buy takes the
        first ask at or above the model's price, a sell the first bid at or below it.

        Parameters
        ----------
        price_usd : float
            Model price, USDT per unit.
        qty : float
            Signed order quantity (> 0 buy), base units.

        Returns
        -------
        float
            ``ceil(price / tick) * tick`` for a buy, ``floor(...)`` for a sell; ``price_usd`` when the tick is 0.
        """
        t = self.tick_size
        if t <= 0:
            return price_usd
        n = price_usd / t
        k = math.ceil(n - 1e-9) if qty > 0 else math.floor(n + 1e-9)
        return round(k * t, _decimals(t))

    def admit(self, qty: float, price_usd: float, position_qty: float = 0.0) -> tuple[float, str]:
        """Round an order to the rules and say whether it may be sent.

        Parameters
        ----------
        qty : float
            Signed order quantity, base units.
        price_usd : float
            Price to value the order's notional at, USDT per unit.
        position_qty : float, default 0.0
            Current signed position: an order closing it exactly is exempt from the minimum notional.

        Returns
        -------
        qty : float
            The rounded signed quantity, or 0.0 when refused.
        reason : str
            ``""`` when admitted, else why not (below the step / minimum quantity / minimum notional).
        """
        q = self.round_qty(qty)
        if q == 0.0 or abs(q) < self.min_qty:
            return 0.0, "change below the quantity step"
        closes = position_qty != 0 and q * position_qty < 0 and math.isclose(abs(q), abs(position_qty))
        if abs(q) * price_usd < self.min_notional_usd and not closes:
            return 0.0, "change below the minimum notional"
        return q, ""


VENUE_RULES: dict[tuple[str, str], MarketRules] = {
    # Binance USD-M GET /fapi/v1/exchangeInfo, BTCUSDT: tickSize 0.10, stepSize 0.001, minQty 0.001,
    # MIN_NOTIONAL 100 USDT (as published 2024).
    ("binance_usdm", "BTCUSDT"): MarketRules(qty_step=0.001, min_qty=0.001, min_notional_usd=100.0, tick_size=0.1),
    # Bybit v5 GET /v5/market/instruments-info?category=linear, BTCUSDT: tickSize 0.10, qtyStep 0.001,
    # minOrderQty 0.001, minNotionalValue 5 USDT; XRPUSDT: tickSize 0.0001, qtyStep 1, minNotionalValue 5.
    ("bybit_linear", "BTCUSDT"): MarketRules(qty_step=0.001, min_qty=0.001, min_notional_usd=5.0, tick_size=0.1),
    ("bybit_linear", "XRPUSDT"): MarketRules(qty_step=1.0, min_qty=1.0, min_notional_usd=5.0, tick_size=0.0001),
}
