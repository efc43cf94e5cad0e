"""Perpetual-swap economics: funding settlements and maintenance-margin tiers (liquidation price)."""

from __future__ import annotations

import datetime as dt
import math
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from quantnb.errors import ConfigError, DataError

__all__ = ["DEFAULT_FUNDING_RATE", "FundingRates", "MarginTier", "MARGIN_TIERS", "maintenance_margin_usd",
           "liquidation_price_usd", "settlements_between"]

# Binance and Bybit USDT perpetuals: interest rate 0.03 %/day, i.e. 0.01 % per 8-hour interval, the rate
# paid when the premium index is inside its clamp (Binance "Introduction to Binance Futures Funding
# Rates"; Bybit "Funding Rate Calculation"). The stated fallback when no funding series is given.
DEFAULT_FUNDING_RATE = 0.0001
SETTLEMENT_HOURS_UTC = (0, 8, 16)


def settlements_between(start: dt.datetime, end: dt.datetime,
                        hours_utc: tuple[int, ...] = SETTLEMENT_HOURS_UTC) -> list[dt.datetime]:
    """Return the funding settlements ``start < s <= end``: UTC, on the hours given (Binance, Bybit: every 8 h).

    Parameters
    ----------
    start, end : datetime
        Bounds in UTC, both aware or both naive; the settlements keep their ``tzinfo``.
    hours_utc : tuple of int, default (0, 8, 16)
        Settlement hours of each day.
    """
    out: list[dt.datetime] = []
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day <= end:
        for h in hours_utc:
            s = day.replace(hour=h)
            if start < s <= end:
                out.append(s)
        day += dt.timedelta(days=1)
    return out


class FundingRates:
    """Funding rate per settlement: a recorded series, or a constant rate as the stated fallback.

    Parameters
    ----------
    times : list of datetime, optional
        Settlement times of the series, strictly increasing (UTC).
    rates : list of float, optional
        Funding rate at each time, fraction per interval (0.0001 = 0.01 %); longs pay when > 0.
    constant_rate : float, default 0.0001
        Rate for settlements the series does not list (:data:`DEFAULT_FUNDING_RATE`).

    Raises
    ------
    ConfigError
        If lengths differ or times are not increasing.
    """

    def __init__(self, times: list[dt.datetime] | None = None, rates: list[float] | None = None,
                 constant_rate: float = DEFAULT_FUNDING_RATE) -> None:
        times, rates = list(times or []), [float(r) for r in (rates or [])]
        if len(times) != len(rates):
            raise ConfigError(f"funding series: {len(times)} times but {len(rates)} rates")
        if any(b <= a for a, b in zip(times, times[1:], strict=False)):
            raise ConfigError("funding series: times must be strictly increasing")
        self._by_time = dict(zip(times, rates, strict=True))
        self.constant_rate = float(constant_rate)

    @classmethod
    def from_parquet(cls, path: str | Path, constant_rate: float = DEFAULT_FUNDING_RATE) -> FundingRates:
        """Read a series with columns ``ts`` (UTC datetime or epoch ms) and ``rate`` (fraction).

        Parameters
        ----------
        path : str or Path
            Parquet file, one row per settlement.
        constant_rate : float, default 0.0001
            Rate for settlements the file does not list.

        Returns
        -------
        FundingRates

        Raises
        ------
        DataError
            If the file lacks a column or holds a non-finite rate (names the file and row).
        """
        path = Path(path)
        df = pl.read_parquet(path)
        for col in ("ts", "rate"):
            if col not in df.columns:
                raise DataError(f"{path}: funding file lacks column {col!r}; write columns ts and rate",
                                field=col)
        if df["ts"].dtype.is_integer():
            df = df.with_columns(pl.from_epoch("ts", time_unit="ms").dt.replace_time_zone("UTC"))
        rates = df["rate"].cast(pl.Float64).to_list()
        for i, r in enumerate(rates):
            if r is None or not math.isfinite(r):
                raise DataError(f"{path} row {i}: rate={r!r} is not a finite number; fix or drop the row",
                                bar=i, field="rate")
        return cls(df["ts"].to_list(), rates, constant_rate)

    def rate_at(self, settlement: dt.datetime) -> float:
        """Return the rate paid at ``settlement`` (the series' value, else the constant fallback).

        Parameters
        ----------
        settlement : datetime
            A settlement time (UTC, on the hour).

        Returns
        -------
        float
            Fraction of position value per interval.
        """
        return self._by_time.get(settlement, self.constant_rate)


@dataclass(frozen=True)
class MarginTier:
    """One maintenance-margin bracket: position notional from ``floor_usd`` pays ``mmr`` of notional.

    Attributes
    ----------
    floor_usd : float
        Lower bound of the bracket's position notional, USDT.
    mmr : float
        Maintenance margin rate, fraction of notional.
    max_leverage : float
        Largest initial leverage allowed in the bracket.
    """

    floor_usd: float
    mmr: float
    max_leverage: float


# Maintenance-margin tiers per (venue, symbol), selected by the venue (``EnvSpec.venue_rules``).
# Binance USD-M BTCUSDT leverage brackets (GET /fapi/v1/leverageBracket, "Leverage and Margin of
# USDⓈ-M Futures", as published 2024; check the live endpoint before relying on a tier).
MARGIN_TIERS: dict[tuple[str, str], tuple[MarginTier, ...]] = {
    ("binance_usdm", "BTCUSDT"): (
        MarginTier(0.0, 0.004, 125), MarginTier(50_000.0, 0.005, 100), MarginTier(600_000.0, 0.0065, 75),
        MarginTier(3_000_000.0, 0.01, 50), MarginTier(12_000_000.0, 0.02, 25),
        MarginTier(70_000_000.0, 0.025, 20), MarginTier(100_000_000.0, 0.05, 10),
        MarginTier(230_000_000.0, 0.1, 5), MarginTier(480_000_000.0, 0.125, 4),
        MarginTier(600_000_000.0, 0.15, 3), MarginTier(800_000_000.0, 0.25, 2),
        MarginTier(1_200_000_000.0, 0.5, 1),
    ),
    # Bybit USDT perpetual BTCUSDT risk-limit tiers (v5 GET /v5/market/risk-limit?category=linear; Bybit help
    # centre "Risk Limit (USDT Contract)"): 2,000,000 USDT per tier, maintenance margin 0.5 % plus 0.5 % per tier,
    # initial margin 1 % plus 0.5 % per tier (max leverage 100, 66.67, 50, ...), with the ``mmDeduction`` that
    # keeps the margin continuous across tiers (the same rule as Binance's ``cum``). CAUTION: these figures
    # were written from documentation memory, without internet access; check the endpoint before relying on them.
    ("bybit_linear", "BTCUSDT"): tuple(
        MarginTier(2_000_000.0 * k, round(0.005 * (k + 1), 4), round(1.0 / (0.01 + 0.005 * k), 2)) for k in range(10)
    ),
}


def _cum(tiers: tuple[MarginTier, ...]) -> list[float]:
    """Maintenance amount per tier (Binance ``cum``): continuous margin across brackets."""
    cum = [0.0]
    for prev, t in zip(tiers, tiers[1:], strict=False):
        cum.append(cum[-1] + t.floor_usd * (t.mmr - prev.mmr))
    return cum


def maintenance_margin_usd(notional_usd: float, tiers: tuple[MarginTier, ...]) -> float:
    """Return the maintenance margin, ``notional * mmr - cum`` of its bracket, USDT.

    Binance, "How to Calculate Liquidation Price of USDⓈ-M Contracts"; also Bybit's with its
    ``mmDeduction`` (Bybit, "Maintenance Margin (USDT Contract)").
    """
    i = bisect_right([t.floor_usd for t in tiers], abs(notional_usd)) - 1
    return abs(notional_usd) * tiers[max(i, 0)].mmr - _cum(tiers)[max(i, 0)]


def liquidation_price_usd(cash_usd: float, position_qty: float, tiers: tuple[MarginTier, ...]) -> float:
    """Return the mark price, USDT, at which equity falls to the maintenance margin; nan if none.

    Solves ``cash + q p = |q| p mmr - cum`` per bracket, ``p = -(cash + cum) / (q (1 - sign(q) mmr))``,
    and keeps the solution whose notional lies in its bracket (one position, cross margin).
    """
    q = position_qty
    cum = _cum(tiers)
    for i, t in enumerate(tiers):
        denom = q * (1.0 - math.copysign(1.0, q) * t.mmr)
        p = -(cash_usd + cum[i]) / denom
        hi = tiers[i + 1].floor_usd if i + 1 < len(tiers) else math.inf
        if p > 0 and t.floor_usd <= abs(q) * p < hi:
            return p
    return math.nan
