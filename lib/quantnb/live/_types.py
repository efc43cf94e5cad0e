"""Value types shared by the live trader's components (bars, account, market rules; fills: quantnb.agent._costs)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from quantnb.agent import MarketRules

__all__ = ["AccountState", "Bar", "MarketRules", "Side"]

Side = Literal["buy", "sell"]


@dataclasses.dataclass(frozen=True, slots=True)
class Bar:
    """One closed candle; prices in quote currency (USDT) per base unit."""

    open_time_ms: int  # epoch ms UTC
    open: float
    high: float
    low: float
    close: float
    volume: float  # the training data's unit (USD notional for the bundled BTC-PERP bars; Binance v: base units)
    quote_volume: float | None = None  # traded notional, quote currency, when the source gives it (Binance q)
    source: str = "replay"  # replay, ws or rest (history download or gap fill)
    # replay only: the next candle's open, at which an order sent on this candle fills (as in the environment)
    next_open: float | None = None
    extras: dict[str, float] | None = None  # further numeric columns (order-book features), by name


@dataclasses.dataclass(frozen=True, slots=True)
class AccountState:
    """Account snapshot for one symbol; money in USDT."""

    balance_usd: float  # wallet balance, realized PnL and fees included
    equity_usd: float  # balance plus unrealized PnL (Binance marginBalance)
    position_qty: float  # signed, base units (negative = short)
    entry_price: float  # 0 when flat
    mark_price: float  # values the position
