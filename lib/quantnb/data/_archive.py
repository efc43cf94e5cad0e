"""The venues' public archive layouts: which files cover a date range, and where they live.

One owner for the layout, read by the download stage and by the loopback archive server
(:mod:`quantnb.testing.archive_server`). Paths are POSIX, relative to the archive's root
URL and, unchanged, to the download's ``output_dir`` (so the ETL reads venue, market and
symbol from the folders, as it does for files the venues' own scripts fetch).

References
----------
Binance public data, https://github.com/binance/binance-public-data (README: folder layout
``data/<spot|futures/um|futures/cm>/<daily|monthly>/<type>/<SYMBOL>/[<interval>/]``,
``.CHECKSUM`` files holding the SHA-256 of each zip). Bybit's archives:
https://public.bybit.com (``trading/<SYMBOL>/<SYMBOL><YYYY-MM-DD>.csv.gz``,
``spot/<SYMBOL>/<SYMBOL>_<YYYY-MM-DD>.csv.gz``) and https://quote-saver.bycsi.com
(``orderbook/<market>/<SYMBOL>/<YYYY-MM-DD>_<SYMBOL>_ob<depth>.data.zip``).
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt

__all__ = ["ArchiveFile", "plan_files", "BINANCE_TYPES", "BYBIT_TYPES", "DEFAULT_BASE_URLS"]

BINANCE_MARKET_PATHS = {"spot": "spot", "usdm": "futures/um", "coinm": "futures/cm"}
_FUTURES_TYPES = ("klines", "aggTrades", "trades", "bookTicker", "bookDepth", "fundingRate", "metrics")
BINANCE_TYPES: dict[str, tuple[str, ...]] = {
    "spot": ("klines", "aggTrades", "trades"), "usdm": _FUTURES_TYPES, "coinm": _FUTURES_TYPES}
BYBIT_TYPES: dict[str, tuple[str, ...]] = {m: ("orderbook", "trades") for m in ("linear", "inverse", "spot")}
_DAILY_ONLY = frozenset({"bookDepth", "metrics"})
_MONTHLY_ONLY = frozenset({"fundingRate"})
# Bybit's order-book archive depth per market (its download page: linear/inverse ob500, spot ob200).
BYBIT_BOOK_DEPTH = {"linear": 500, "inverse": 500, "spot": 200}

#: The venues' public archives (``None`` base_url); Bybit's order books live on another host.
DEFAULT_BASE_URLS: dict[tuple[str, str], str] = {
    ("binance", "*"): "https://data.binance.vision",
    ("bybit", "trades"): "https://public.bybit.com",
    ("bybit", "orderbook"): "https://quote-saver.bycsi.com",
}


@dataclasses.dataclass(frozen=True)
class ArchiveFile:
    """One file of a venue's archive."""

    path: str  # POSIX path relative to the archive root (and to the download's output_dir)
    symbol: str  # exchange symbol, upper case
    period: str  # YYYY-MM-DD (a daily file) or YYYY-MM (a monthly file)
    checksum: bool  # whether the archive publishes <path>.CHECKSUM (SHA-256) next to it (Binance)

    @property
    def name(self) -> str:
        """The file name (last path component)."""
        return self.path.rsplit("/", 1)[-1]


def _months(start: dt.date, end: dt.date) -> list[tuple[int, int]]:
    out, (y, m) = [], (start.year, start.month)
    while (y, m) <= (end.year, end.month):
        out.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _periods(start: dt.date, end: dt.date, data_type: str, today: dt.date) -> list[str]:
    """Monthly periods for whole finished months asked for, daily ones for the rest; no day twice."""
    out: list[str] = []
    for y, m in _months(start, end):
        first, last = dt.date(y, m, 1), dt.date(y, m, calendar.monthrange(y, m)[1])
        if data_type in _MONTHLY_ONLY:
            out.append(f"{y:04d}-{m:02d}")
            continue
        whole = start <= first and last <= end and last < today
        if whole and data_type not in _DAILY_ONLY:
            out.append(f"{y:04d}-{m:02d}")
            continue
        day = max(first, start)
        while day <= min(last, end):
            out.append(day.isoformat())
            day += dt.timedelta(days=1)
    return out


def _binance_path(market: str, data_type: str, symbol: str, interval: str, period: str) -> str:
    freq = "monthly" if len(period) == 7 else "daily"
    folder = f"data/{BINANCE_MARKET_PATHS[market]}/{freq}/{data_type}/{symbol}"
    if data_type == "klines":
        return f"{folder}/{interval}/{symbol}-{interval}-{period}.zip"
    return f"{folder}/{symbol}-{data_type}-{period}.zip"


def _bybit_path(market: str, data_type: str, symbol: str, day: str, depth: int | None) -> str:
    if data_type == "orderbook":
        return f"orderbook/{market}/{symbol}/{day}_{symbol}_ob{depth or BYBIT_BOOK_DEPTH[market]}.data.zip"
    if market == "spot":
        return f"spot/{symbol}/{symbol}_{day}.csv.gz"
    return f"trading/{symbol}/{symbol}{day}.csv.gz"


def plan_files(venue: str, market: str, data_type: str, symbols: list[str], start: dt.date, end: dt.date, *,
               interval: str = "1m", book_depth: int | None = None,
               today: dt.date | None = None) -> list[ArchiveFile]:
    """Return the archive files that cover ``start`` to ``end`` (UTC dates, inclusive), per symbol.

    Binance: a monthly file for each calendar month asked for whole (and already over),
    daily files for the other days; ``fundingRate`` is published monthly only (the month of
    any day asked for), ``bookDepth`` and ``metrics`` daily only. No day is covered twice.
    Bybit: daily files.

    Parameters
    ----------
    venue, market, data_type : str
        ``"binance"`` or ``"bybit"``; a market and data type of :data:`BINANCE_TYPES` / :data:`BYBIT_TYPES`.
    symbols : list of str
        Venue symbols, e.g. ``["BTCUSDT"]`` (upper-cased).
    start, end : datetime.date
        First and last UTC day.
    interval : str, default "1m"
        Kline interval (Binance ``klines`` only).
    book_depth : int, optional
        Bybit order-book levels; default 500 (linear, inverse) or 200 (spot).
    today : datetime.date, optional
        The UTC date that decides which months are over; default now.

    Raises
    ------
    ValueError
        If ``start > end`` or the venue, market or data type is not in the tables.
    """
    if start > end:
        raise ValueError(f"start={start} is after end={end}; give start <= end (UTC dates, inclusive)")
    table = BINANCE_TYPES if venue == "binance" else BYBIT_TYPES if venue == "bybit" else None
    if table is None:
        raise ValueError(f"venue={venue!r}: expected 'binance' or 'bybit'")
    if market not in table:
        raise ValueError(f"market={market!r}: {venue} archive markets are {', '.join(table)}")
    if data_type not in table[market]:
        raise ValueError(f"data_type={data_type!r}: the {venue} {market} archive has {', '.join(table[market])}")
    today = today or dt.datetime.now(dt.UTC).date()
    out = []
    for symbol in (s.upper() for s in symbols):
        if venue == "binance":
            for period in _periods(start, end, data_type, today):
                out.append(ArchiveFile(_binance_path(market, data_type, symbol, interval, period), symbol, period,
                                       True))
        else:
            day = start
            while day <= end:
                out.append(ArchiveFile(_bybit_path(market, data_type, symbol, day.isoformat(), book_depth), symbol,
                                       day.isoformat(), False))
                day += dt.timedelta(days=1)
    return out


def default_base_url(venue: str, data_type: str) -> str:
    """Return the public archive's root URL for ``venue`` and ``data_type``, e.g. ``https://data.binance.vision``.

    Parameters
    ----------
    venue, data_type : str
        As in :func:`plan_files`; Bybit's order books have their own host.
    """
    return DEFAULT_BASE_URLS.get((venue, data_type)) or DEFAULT_BASE_URLS[(venue, "*")]
