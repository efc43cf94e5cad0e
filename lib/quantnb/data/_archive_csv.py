"""Readers of the venues' public archive CSVs: Binance klines, aggTrades, bookTicker, fundingRate; Bybit trades.

Each returns partial 1-minute rows (or, for funding, a rate series) in the columns of
:data:`~quantnb.data._schema.PART_SCHEMA`; :func:`quantnb.data.ingest_file` tags and merges
them like every other source. Zips hold one CSV (extracted to a temporary folder, never
read whole into memory); Binance spot files have no header, futures files have one; spot
timestamps are microseconds from 2025-01-01 on (all time columns are read by magnitude:
seconds, milliseconds or microseconds).

References
----------
Binance public data, https://github.com/binance/binance-public-data (README: columns of
klines, aggTrades, trades; "spot data from 2025-01-01 are in microseconds").
Bybit public trading history, https://public.bybit.com (``trading``: ``timestamp`` in
seconds, ``side`` of the taker; ``spot``: ``id, timestamp`` (ms), ``price, volume, side``).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

import polars as pl

from quantnb.data._bar_rules import judge_bars, oldest_first
from quantnb.data._bars import MINUTE_MS, minute_start, trades_to_bars
from quantnb.data._csv import (
    _LINE,
    _check_times,
    _fatal_prices,
    _flag_rows,
    _header,
    _numbers,
    _order_checks,
    _read_strings,
    _trades_path,
)
from quantnb.data._quality import QualityReport
from quantnb.data._schema import MID_FIELDS
from quantnb.errors import DataError

KLINE_COLUMNS = ("open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "count",
                 "taker_buy_volume", "taker_buy_quote_volume", "ignore")
AGG_COLUMNS = ("agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id", "transact_time",
               "is_buyer_maker", "is_best_match")
BBO_COLUMNS = ("update_id", "best_bid_price", "best_bid_qty", "best_ask_price", "best_ask_qty", "transaction_time",
               "event_time")
FUNDING_COLUMNS = ("calc_time", "funding_interval_hours", "last_funding_rate")
FUNDING_SCHEMA: dict[str, pl.DataType] = {
    "venue": pl.String(), "market": pl.String(), "symbol": pl.String(), "ts": pl.Datetime("us", "UTC"),
    "funding_rate": pl.Float64(), "funding_interval_h": pl.Int64(), "file": pl.String(),
}


@contextlib.contextmanager
def _csv_of(path: Path) -> Iterator[tuple[Path, list[str], bool]]:
    """Yield the CSV (extracted from a zip when needed), its first row's fields and whether that row is a header."""
    with tempfile.TemporaryDirectory(prefix="quantnb-archive-") as tmp:
        csv = _trades_path(path, Path(tmp))
        first = _header(csv)
        yield csv, first, not first[0].lstrip("-").isdigit()


def _read(path: Path, names: Sequence[str], required: Sequence[str]) -> pl.DataFrame:
    """Read a header-or-not CSV as strings; a header-less file's columns are named ``names`` in order."""
    with _csv_of(path) as (csv, first, has_header):
        cols = list(required) if has_header else list(names[:len(first)])
        if not has_header and len(first) < len(required):
            raise DataError(f"{path} line 1: {len(first)} column(s); expected at least {len(required)} "
                            f"({', '.join(required)}) — is it the right file type?", path=str(path), line=1)
        frame = _read_strings(csv, cols, has_header)
    return frame


def read_klines(path: Path, report: QualityReport) -> pl.DataFrame:
    """Read a Binance 1-minute kline CSV (zip or plain, spot or futures); return one row a minute.

    ``open_time`` is in ms, or us (spot from 2025); the rows are ``ts`` (Datetime[us, UTC]), ``open, high,
    low, close`` (quote per base unit), ``volume`` and ``buy_volume`` (base units), ``n_trades``.
    """
    interval = path.name.split("-")[1] if path.name.count("-") >= 2 else "1m"
    if interval != "1m":
        raise DataError(f"{path}: {interval} klines; the ETL builds 1-minute bars from 1m klines only — download "
                        "interval 1m", path=str(path))
    frame = _read(path, KLINE_COLUMNS, KLINE_COLUMNS[:11])
    frame = _numbers(path, frame, ("open", "high", "low", "close", "volume", "taker_buy_volume"), pl.Float64())
    frame = _numbers(path, frame, ("count",), pl.Int64())
    frame = oldest_first(_check_times(path, frame, "open_time"), "open_time", path)
    report.lines, report.messages = frame.height, frame.height
    _flag_rows(report, "unaligned_ts", frame.filter(pl.col("open_time") % MINUTE_MS != 0),
               "open_time not on a minute boundary; floored to the minute")
    frame = judge_bars(frame.with_columns(pl.col("open_time") // MINUTE_MS * MINUTE_MS), report, ts="open_time",
                       line=_LINE)
    return frame.select(ts=minute_start(pl.col("open_time")), open="open", high="high", low="low", close="close",
                        volume="volume", n_trades="count", buy_volume="taker_buy_volume")


def read_agg_trades(path: Path, report: QualityReport) -> pl.DataFrame:
    """Read a Binance aggTrades CSV (zip or plain); return 1-minute trade bars (``trades_to_bars``)."""
    frame = _read(path, AGG_COLUMNS, AGG_COLUMNS[:7])
    frame = _numbers(path, frame, ("agg_trade_id", "first_trade_id", "last_trade_id"), pl.Int64())
    frame = _numbers(path, frame, ("price", "quantity"), pl.Float64())
    _fatal_prices(path, frame, ("price",))
    frame = _check_times(path, frame, "transact_time")
    report.lines, report.messages = frame.height, frame.height
    frame = frame.with_columns(is_buyer_maker=pl.col("is_buyer_maker").str.strip_chars().str.to_lowercase() == "true")
    bad = frame.filter(~(pl.col("quantity") > 0) | ~pl.col("quantity").is_finite() | ~(pl.col("price") > 0))
    _flag_rows(report, "non_positive_price", bad, "price or quantity <= 0, NaN or empty; aggregate skipped")
    frame = frame.filter((pl.col("quantity") > 0) & pl.col("quantity").is_finite() & (pl.col("price") > 0))
    _order_checks(report, frame, "transact_time", "aggregate trade")
    dups = frame.filter(pl.col("agg_trade_id").is_duplicated() & ~pl.col("agg_trade_id").is_first_distinct())
    _flag_rows(report, "duplicates", dups, "agg_trade_id repeats an earlier row; the first row is kept")
    frame = frame.unique("agg_trade_id", keep="first", maintain_order=True)
    trades = frame.select(ts_ms="transact_time", id="agg_trade_id", price="price", qty="quantity",
                          is_buyer_maker="is_buyer_maker")
    bars = judge_bars(trades_to_bars(trades), report, sequence=False)
    counts = (frame.with_columns(n=pl.col("last_trade_id") - pl.col("first_trade_id") + 1,
                                 ts=minute_start(pl.col("transact_time")))
              .group_by("ts").agg(pl.col("n").sum().cast(pl.Int64)))
    report.trades = int(counts["n"].sum()) if counts.height else 0
    return bars.join(counts, on="ts", how="left").with_columns(n_trades="n").drop("n").sort("ts")


def read_book_ticker(path: Path, report: QualityReport) -> pl.DataFrame:
    """Read a Binance bookTicker CSV; return per-minute top-of-book features.

    ``micro_price_close`` is Stoikov's (2018) micro-price of the last quote, as :attr:`OrderBook.micro_price`;
    ``spread_bps_mean`` the mean of ``1e4 * (ask - bid) / mid``; depth fields stay null (a quote has one level).
    """
    frame = _read(path, BBO_COLUMNS, BBO_COLUMNS[:6])
    px = ("best_bid_price", "best_ask_price", "best_bid_qty", "best_ask_qty")
    frame = _numbers(path, frame, px, pl.Float64())
    frame = _numbers(path, frame, ("update_id",), pl.Int64())
    _fatal_prices(path, frame, px[:2])
    frame = _check_times(path, frame, "transaction_time")
    report.lines, report.messages = frame.height, frame.height
    b, a, bq, aq = (pl.col(c) for c in px)
    crossed = frame.filter(b > a)
    _flag_rows(report, "crossed", crossed, "best bid above best ask; quote skipped")
    frame = frame.filter((b <= a) & (b > 0) & (bq >= 0) & (aq >= 0)).sort("transaction_time", "update_id")
    mid = (b + a) / 2
    micro = pl.when(bq + aq > 0).then((b * aq + a * bq) / (bq + aq)).otherwise(mid)
    bars = (frame.with_columns(ts=minute_start(pl.col("transaction_time")), _mid=mid, _micro=micro,
                               _sp=1e4 * (a - b) / mid)
            .group_by("ts", maintain_order=True)
            .agg(mid_open=pl.col("_mid").first(), mid_high=pl.col("_mid").max(), mid_low=pl.col("_mid").min(),
                 mid_close=pl.col("_mid").last(), micro_price_close=pl.col("_micro").last(),
                 spread_bps_mean=pl.col("_sp").mean(), n_book_updates=pl.len().cast(pl.Int64),
                 resyncs=pl.lit(0, pl.Int64))
            .sort("ts"))
    return judge_bars(bars, report, columns=MID_FIELDS, sequence=False)


def read_funding(path: Path, report: QualityReport) -> pl.DataFrame:
    """Read a Binance fundingRate CSV; return the funding series (not bars).

    ``funding_rate`` is the fraction of notional paid by longs to shorts when positive.
    """
    frame = _read(path, FUNDING_COLUMNS, FUNDING_COLUMNS)
    frame = _numbers(path, frame, ("last_funding_rate",), pl.Float64())
    frame = _numbers(path, frame, ("funding_interval_hours",), pl.Int64())
    _fatal_prices(path, frame, ("last_funding_rate",))
    frame = _check_times(path, frame, "calc_time")
    report.lines, report.messages = frame.height, frame.height
    dups = frame.filter(pl.col("calc_time").is_duplicated() & ~pl.col("calc_time").is_first_distinct())
    _flag_rows(report, "duplicates", dups, "calc_time repeats an earlier row; the first row is kept")
    frame = frame.unique("calc_time", keep="first", maintain_order=True).sort("calc_time")
    ts = (pl.col("calc_time") * 1000).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    return frame.select(ts=ts, funding_rate="last_funding_rate", funding_interval_h="funding_interval_hours")


def read_bybit_trades(path: Path, report: QualityReport) -> pl.DataFrame:
    """Read a Bybit public trades CSV (``.csv.gz`` or plain); return 1-minute trade bars."""
    try:
        frame = pl.read_csv(path, infer_schema=False, glob=False)
    except (pl.exceptions.PolarsError, OSError) as exc:  # a truncated gzip is an OSError ("unexpected end")
        raise DataError(f"{path}: unreadable CSV ({type(exc).__name__}: {str(exc).splitlines()[0]}); the file is "
                        "corrupt or truncated — re-download it", path=str(path)) from exc
    frame = frame.rename({c: c.strip().lower() for c in frame.columns})
    size = "size" if "size" in frame.columns else "volume"
    missing = [c for c in ("timestamp", "side", "price", size) if c not in frame.columns]
    if missing:
        raise DataError(f"{path} line 1: missing column(s) {missing}; expected Bybit's trades header "
                        "(timestamp, symbol, side, size, price, ... or id, timestamp, price, volume, side)",
                        path=str(path), line=1)
    frame = frame.with_row_index(_LINE, offset=2).with_columns(pl.col(_LINE).cast(pl.Int64))
    frame = _numbers(path, frame, ("timestamp", "price", size), pl.Float64())
    _fatal_prices(path, frame, ("price", "timestamp"))
    report.lines, report.messages = frame.height + 1, frame.height
    big = cast(float, frame["timestamp"].abs().max() or 0)
    scale = 1000.0 if big < 1e11 else 1.0 if big < 1e14 else 1e-3  # by magnitude: s, ms or us
    frame = frame.with_columns(ts_ms=(pl.col("timestamp") * scale).round().cast(pl.Int64),
                               is_buyer_maker=pl.col("side").str.strip_chars().str.to_lowercase() == "sell")
    bad = frame.filter(~(pl.col(size) > 0) | ~(pl.col("price") > 0))
    _flag_rows(report, "non_positive_price", bad, "price or size <= 0 or NaN; trade skipped")
    frame = frame.filter((pl.col(size) > 0) & (pl.col("price") > 0))
    _order_checks(report, frame, "ts_ms", "trade")
    report.trades = frame.height
    bars = trades_to_bars(frame.select("ts_ms", id=_LINE, price="price", qty=size, is_buyer_maker="is_buyer_maker"))
    return judge_bars(bars, report, sequence=False)
