"""Value types shared by the live trader's components (bars, account, market rules; fills: quantnb.agent._costs)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from quantnb.agent._rules import MarketRules  # the one owner; re-exported here for live code

__all__ = ["AccountState", "Bar", "MarketRules", "Side"]

Side = Literal["buy", "sell"]


@dataclasses.dataclass(frozen=True, slots=True)
class Bar:
    """One closed candle.

    Attributes
    ----------
    open_time_ms : int
        Candle open time, epoch milliseconds UTC.
    open, high, low, close : float
        Prices, quote currency (USDT) per base unit.
    volume : float
        Traded volume, in the unit of the training data (USD notional for the bundled
        BTC-PERP bars; base units for Binance ``v``); see ``quote_volume``.
    quote_volume : float or None
        Traded notional, quote currency, when the source gives it (Binance ``q``).
    source : {"replay", "ws", "rest"}
        Where the candle came from (``rest`` = history download or a gap fill).
    next_open : float or None
        Replay only: the first price after the close (the next candle's open), at which a
        market order sent on this candle fills, as in the training environment.
    extras : dict of str to float or None
        Further numeric columns of the source bar (order-book features), by name.
    """

    open_time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float | None = None
    source: str = "replay"
    next_open: float | None = None
    extras: dict[str, float] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class AccountState:
    """Account snapshot for one symbol.

    Attributes
    ----------
    balance_usd : float
        Wallet balance, USDT (realized PnL and fees included).
    equity_usd : float
        ``balance_usd`` plus unrealized PnL, USDT (Binance ``marginBalance``).
    position_qty : float
        Signed position, base units (negative = short).
    entry_price : float
        Average entry price of the position, USDT; 0 when flat.
    mark_price : float
        Price used to value the position, USDT.
    """

    balance_usd: float
    equity_usd: float
    position_qty: float
    entry_price: float
    mark_price: float
