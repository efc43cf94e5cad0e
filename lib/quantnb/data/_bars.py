"""One-minute aggregation: book features per minute, trades to bars, gap flags (pure polars transforms)."""

from __future__ import annotations

import datetime as dt
import math
from array import array

import polars as pl

from quantnb.data._bar_rules import MINUTE_MS, judge_bars
from quantnb.data._book import OrderBook
from quantnb.data._quality import QualityReport
from quantnb.data._schema import MID_FIELDS, UTC_MINUTE

_INF = math.inf
DEPTH_LEVELS = 10
GAP_MIN = 2

TRADE_INPUT_SCHEMA: dict[str, pl.DataType] = {
    "ts_ms": pl.Int64(), "id": pl.Int64(), "price": pl.Float64(), "qty": pl.Float64(), "is_buyer_maker": pl.Boolean(),
}
TRADE_BAR_SCHEMA: dict[str, pl.DataType] = {
    "ts": UTC_MINUTE, "open": pl.Float64(), "high": pl.Float64(), "low": pl.Float64(), "close": pl.Float64(),
    "volume": pl.Float64(), "n_trades": pl.Int64(), "buy_volume": pl.Float64(),
    "first_ms": pl.Int64(), "last_ms": pl.Int64(),
}
_BOOK_ROW_SCHEMA: dict[str, pl.DataType] = {
    "minute": pl.Int64(), "mid_open": pl.Float64(), "mid_high": pl.Float64(), "mid_low": pl.Float64(),
    "mid_close": pl.Float64(), "micro_price_close": pl.Float64(), "spread_bps_mean": pl.Float64(),
    "bid_depth_10": pl.Float64(), "ask_depth_10": pl.Float64(), "imbalance_10": pl.Float64(),
    "n_book_updates": pl.Int64(), "resyncs": pl.Int64(),
}


def minute_start(ms: pl.Expr) -> pl.Expr:
    """Return the UTC minute start (Datetime[us, UTC]) of epoch-millisecond timestamps."""
    return ((ms // MINUTE_MS) * (MINUTE_MS * 1000)).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


def trades_to_bars(trades: pl.DataFrame) -> pl.DataFrame:
    """Aggregate trades into 1-minute OHLCV bars (``TRADE_BAR_SCHEMA``), one row per minute with trades.

    Prices in ``(ts_ms, id)`` order; ``buy_volume``: taker buys (``is_buyer_maker`` False), base
    units; ``first_ms, last_ms``: first and last trade time, for :func:`combine_trade_bars`.
    """
    if trades.height == 0:
        return pl.DataFrame(schema=TRADE_BAR_SCHEMA)
    return (
        trades.sort(["ts_ms", "id"])
        .with_columns(ts=minute_start(pl.col("ts_ms")))
        .group_by("ts", maintain_order=True)
        .agg(
            open=pl.col("price").first(),
            high=pl.col("price").max(),
            low=pl.col("price").min(),
            close=pl.col("price").last(),
            volume=pl.col("qty").sum(),
            n_trades=pl.len().cast(pl.Int64),
            buy_volume=pl.col("qty").filter(~pl.col("is_buyer_maker")).sum(),
            first_ms=pl.col("ts_ms").first(),
            last_ms=pl.col("ts_ms").last(),
        )
        .select([pl.col(c).cast(dt) for c, dt in TRADE_BAR_SCHEMA.items()])
    )


def combine_trade_bars(bars: pl.DataFrame) -> pl.DataFrame:
    """Combine trade bars of consecutive chunks of one trade stream into one row per minute.

    Open of the earliest ``first_ms`` (ties: earlier chunk), close of the latest ``last_ms`` (ties:
    later chunk), max high, min low, summed volume, buy volume and count.
    """
    if bars.height == 0:
        return pl.DataFrame(schema=TRADE_BAR_SCHEMA)
    return (
        bars.group_by("ts", maintain_order=True)
        .agg(
            open=pl.col("open").sort_by("first_ms", maintain_order=True).first(),
            high=pl.col("high").max(),
            low=pl.col("low").min(),
            close=pl.col("close").sort_by("last_ms", maintain_order=True).last(),
            volume=pl.col("volume").sum(),
            n_trades=pl.col("n_trades").sum(),
            buy_volume=pl.col("buy_volume").sum(),
            first_ms=pl.col("first_ms").min(),
            last_ms=pl.col("last_ms").max(),
        )
        .sort("ts")
        .select([pl.col(c).cast(dt) for c, dt in TRADE_BAR_SCHEMA.items()])
    )


def flag_gaps(ts: pl.Expr, over: str | list[str] | None = None) -> pl.Expr:
    """Return a Boolean expression: True where the previous bar is ``GAP_MIN`` (2) minutes or more earlier."""
    diff = ts.diff()
    if over is not None:
        diff = diff.over(over)
    return (diff >= pl.duration(minutes=GAP_MIN)).fill_null(False)


class TradeBuffer:
    """Column buffers of streamed trades, turned into partial bars every ``chunk`` trades.

    Parameters
    ----------
    chunk : int, default 50000
        Trades buffered before the reader calls :meth:`flush`.
    """

    def __init__(self, chunk: int = 50_000) -> None:
        self.chunk = chunk
        self.ts, self.ids = array("q"), array("q")
        self.px, self.qty = array("d"), array("d")
        self.maker: list[bool] = []
        self.parts: list[pl.DataFrame] = []

    def flush(self) -> None:
        if not self.ts:
            return
        frame = pl.DataFrame({"ts_ms": self.ts, "id": self.ids, "price": self.px, "qty": self.qty,
                              "is_buyer_maker": self.maker}, schema=TRADE_INPUT_SCHEMA)
        self.parts.append(trades_to_bars(frame))
        self.ts, self.ids, self.px, self.qty, self.maker = array("q"), array("q"), array("d"), array("d"), []

    def bars(self) -> pl.DataFrame:
        self.flush()
        if not self.parts:
            return pl.DataFrame(schema=TRADE_BAR_SCHEMA)
        return combine_trade_bars(pl.concat(self.parts)) if len(self.parts) > 1 else self.parts[0]


class BookMinutes:
    """Per-minute book features, accumulated update by update and closed at the next minute.

    The reader calls :meth:`roll` when an event of a later minute arrives (before applying
    it, so the close reflects the book at the end of the minute) and :meth:`add` after
    each applied message. Spread mean is over updates (not time-weighted); mid OHLC is
    kept for the bar fallback when a symbol has no trades.

    Parameters
    ----------
    book : OrderBook
        The book the reader updates; read at each minute's close.
    report : QualityReport
        Where unsynced minutes and top-of-book repairs are counted.
    """

    def __init__(self, book: OrderBook, report: QualityReport) -> None:
        self.book = book
        self.report = report
        self.rows: list[tuple[object, ...]] = []
        self.minute = -1
        self.next_ms = -_INF  # first ms of the next minute; -inf: no minute open yet
        self.synced = False
        self._clear()

    def _clear(self) -> None:
        self.n = 0
        self.resyncs = 0
        self.sp_sum = 0.0
        self.sp_n = 0
        self.m_open = self.m_high = self.m_low = self.m_close = math.nan

    def roll(self, ts_ms: int) -> None:
        """Close the open minute (if any) and open the minute of ``ts_ms``.

        Parameters
        ----------
        ts_ms : int
            Event time, ms since the Unix epoch (UTC).
        """
        if self.minute >= 0:
            self._close()
        self.minute = ts_ms // MINUTE_MS
        self.next_ms = (self.minute + 1) * MINUTE_MS
        self._clear()

    def add(self, bb: float, ba: float) -> None:
        """Account one applied book message with best bid ``bb`` and best ask ``ba``.

        Parameters
        ----------
        bb, ba : float
            Best bid and ask after the message, quote currency; ``-inf`` / ``inf`` for an empty side.
        """
        self.n += 1
        d = ba - bb
        if 0.0 <= d < _INF:
            self.sp_sum += d / (ba + bb)
            self.sp_n += 1
            mid = (ba + bb) * 0.5
            if self.sp_n == 1:
                self.m_open = self.m_high = self.m_low = mid
            elif mid > self.m_high:
                self.m_high = mid
            elif mid < self.m_low:
                self.m_low = mid
            self.m_close = mid

    def _close(self) -> None:
        book = self.book
        if self.synced and not book.check_top():
            self.report.flag("top_repairs", None, "best bid/ask kept incrementally differed from a full scan at the "
                             "minute close (price off the inferred tick grid?); repaired")
        if self.synced and not math.isnan(book.best_bid) and not math.isnan(book.best_ask) and not book.is_crossed:
            bid_d, ask_d = book.depth(DEPTH_LEVELS)
            feats: tuple[float | None, ...] = (book.micro_price, bid_d, ask_d, (bid_d - ask_d) / (bid_d + ask_d))
        else:
            feats = (None, None, None, None)
            when = dt.datetime.fromtimestamp(self.minute * 60, dt.UTC).strftime("%Y-%m-%d %H:%M")
            self.report.flag("unsynced_minutes", None, f"minute {when} UTC: no synced (or an empty or crossed) "
                             "book at the close; its bar carries no book features")
        spread = 2e4 * self.sp_sum / self.sp_n if self.sp_n else None
        mids = (self.m_open, self.m_high, self.m_low, self.m_close) if self.sp_n else (None, None, None, None)
        self.rows.append((self.minute, *mids, feats[0], spread, *feats[1:], self.n, self.resyncs))

    def frame(self) -> pl.DataFrame:
        """Close the last minute and return the rows as a frame with a ``ts`` column."""
        if self.minute >= 0:
            self._close()
            self.minute = -1
        rows = pl.DataFrame(self.rows, schema=_BOOK_ROW_SCHEMA, orient="row")
        rows = rows.with_columns(ts=minute_start(pl.col("minute") * MINUTE_MS)).drop("minute")
        priced = pl.col("mid_open").is_not_null()  # a minute without a valid spread has no mid bar to judge
        kept = judge_bars(rows.filter(priced), self.report, columns=MID_FIELDS, sequence=False)
        return pl.concat([kept, rows.filter(~priced)]).sort("ts")
