"""Order-book features for testnet/live: closed candles joined with the live book's minute features.

:class:`BookFeatureProvider` wraps a candle provider (e.g. ``CcxtKlineProvider``) and runs a
live book client of :mod:`quantnb.record` (no sinks) in a background thread. Each closed candle
gets, in :attr:`Bar.extras`, the book columns of its minute (``mid_close``,
``micro_price_close``, ``spread_bps_mean``, ``bid_depth_10``, ``ask_depth_10``,
``imbalance_10``), computed by the ETL's own ``OrderBook`` and minute aggregation, so the
agent sees the same numbers the ETL gives for a recording of the same stream.

:func:`with_book_features` is the hook the session builder calls: it returns the provider
unchanged when the bundle needs no book feature, wraps it when it does, and refuses at
start (:class:`~quantnb.errors.ConfigError`) a bundle whose features no live feed gives.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import polars as pl
from loguru import logger

from quantnb.data import data_columns
from quantnb.errors import ConfigError
from quantnb.live._feed import DataProvider
from quantnb.live._types import Bar

__all__ = ["BookFeatureProvider", "with_book_features", "BOOK_COLUMNS", "check_live_features", "check_replay_features",
           "book_source_columns"]

BOOK_COLUMNS = ("mid_close", "micro_price_close", "spread_bps_mean", "bid_depth_10", "ask_depth_10", "imbalance_10")
_MINUTE_MS = 60_000


def book_source_columns(feature_names: Sequence[str]) -> tuple[str, ...]:
    """Return the book columns (``spread_bps_mean``, ...) the bundle's order-book features are computed from."""
    from quantnb.agent import BOOK_FEATURE_SOURCES

    return tuple(dict.fromkeys(c for f in feature_names for c in BOOK_FEATURE_SOURCES.get(f, ())))


def check_replay_features(feature_names: Sequence[str], bars: pl.DataFrame, *, computed: Sequence[str] = (),
                          where: str = "the replay bars") -> None:
    """Refuse a replay whose bars cannot give some feature of the agent (before any bar is traded)."""
    from quantnb.agent import BOOK_FEATURE_SOURCES, MARKET_FEATURES

    wanted = [f for f in feature_names if f not in computed]
    unknown = [f for f in wanted if f not in MARKET_FEATURES and f not in BOOK_FEATURE_SOURCES]
    have = set(data_columns(bars))
    lacking = {f: [c for c in BOOK_FEATURE_SOURCES[f] if c not in have]
               for f in wanted if f in BOOK_FEATURE_SOURCES}
    lacking = {f: cols for f, cols in lacking.items() if cols}
    if unknown or lacking:
        what = [f"{f} (needs column {', '.join(cols)})" for f, cols in lacking.items()] + unknown
        raise ConfigError(f"the agent needs features {what} that {where} cannot give (columns: "
                          f"{', '.join(bars.columns)}); replay the ETL's bars with order-book columns (a recording "
                          "of the book), or trade an agent trained without these features")


def check_live_features(feature_names: Sequence[str], *, book_feed: bool, computed: Sequence[str] = ()) -> list[str]:
    """Return the bundle's order-book features; raise if a live feed cannot give some feature."""
    from quantnb.agent import BOOK_FEATURE_SOURCES, MARKET_FEATURES

    feature_names = [f for f in feature_names if f not in computed]
    unknown = [f for f in feature_names if f not in MARKET_FEATURES and f not in BOOK_FEATURE_SOURCES]
    if unknown:
        raise ConfigError(f"the agent bundle needs features {unknown} that no live feed gives (kline features: "
                          f"{', '.join(MARKET_FEATURES)}; order-book features: {', '.join(BOOK_FEATURE_SOURCES)}); "
                          "retrain the agent without them")
    book = [f for f in feature_names if f in BOOK_FEATURE_SOURCES]
    if book and not book_feed:
        raise ConfigError(f"the agent bundle needs order-book features {book} but this session's feed is klines "
                          "only; enable the live book feed (book_feed) or retrain the agent without them")
    return book


class BookFeatureProvider(DataProvider):
    """Candles from ``inner`` with the live book's features of each candle's minute in ``extras``.

    A candle waits up to ``book_wait_s`` for the book to pass its minute (the next update after the
    minute's end closes it, as in the ETL), then takes the book's current state. No synced book
    within ``sync_timeout_s`` at start raises ConfigError (the features could never be computed).
    """

    def __init__(self, inner: DataProvider, symbol: str, *, venue: str = "binance", ws_url: str | None = None,
                 rest_url: str | None = None, market: str | None = None, depth: int = 1000,
                 book_wait_s: float = 2.0, sync_timeout_s: float = 30.0) -> None:
        from quantnb.record import Recorder, RecorderConfig

        self.inner = inner
        self.symbol = symbol.upper().replace("/", "").split(":")[0]
        self.book_wait_s = book_wait_s
        cfg = RecorderConfig(venue=venue, market=market or ("usdm" if venue == "binance" else "linear"),
                             symbols=(self.symbol,), depth=depth, channels=("book",), ws_url=ws_url,
                             rest_url=rest_url, progress_every_s=300.0, flush_every_s=3600.0)
        self.recorder = Recorder(cfg)
        self._thread = threading.Thread(target=self._run, name="book-feed", daemon=True)
        self._thread.start()
        self.missing_book = 0
        if not self.recorder.started.wait(30):
            self._refuse(f"the live book feed for {self.symbol} did not start within 30 s")
        deadline = time.monotonic() + sync_timeout_s
        while not self._synced():
            if time.monotonic() >= deadline or not self._thread.is_alive():
                self._refuse(f"the live book feed of {self.symbol} ({ws_url or 'venue default'}) gave no synced book "
                             f"within sync_timeout_s={sync_timeout_s:g} s (feed down or blocked)")
            time.sleep(0.05)

    def _synced(self) -> bool:
        client = self.recorder.client
        book = None if client is None else client.books.get(self.symbol)
        return bool(book is not None and book.synced)

    def _refuse(self, why: str) -> None:
        self.recorder.request_stop()
        self._thread.join(10)
        raise ConfigError(f"{why}: the agent's order-book features cannot be computed, so the session does not "
                          "start (nothing was traded); check the book stream's address and the network, then start "
                          "again")

    def _run(self) -> None:
        try:
            self.recorder.run()
        except Exception as exc:  # noqa: BLE001 - reported; candles then carry no book features
            logger.opt(exception=exc).error("live book feed for {} stopped: {}: {}", self.symbol,
                                            type(exc).__name__, exc)

    @property
    def finished(self) -> bool:  # type: ignore[override]
        return self.inner.finished

    def warmup(self) -> list[Bar]:
        """Return the inner provider's warm-up candles, book columns null (the features wait for the live book)."""
        return [_with_extras(b, dict.fromkeys(BOOK_COLUMNS)) for b in self.inner.warmup()]

    def next_bar(self, timeout_s: float) -> Bar | None:
        """Return the next closed candle with its minute's book columns in ``extras`` (None before a synced book)."""
        bar = self.inner.next_bar(timeout_s)
        if bar is None:
            return None
        row = self.book_row(bar.open_time_ms)
        if row is None:
            self.missing_book += 1
            logger.warning("live/book_feed: no synced book for the candle of {} (book columns null)",
                           bar.open_time_ms)
            row = dict.fromkeys(BOOK_COLUMNS)
        return _with_extras(bar, row)

    def book_row(self, minute_ms: int) -> dict[str, float | None] | None:
        """Return the book columns of the minute starting at ``minute_ms`` (waits up to ``book_wait_s``)."""
        if self.recorder.client is None:
            return None
        deadline = time.monotonic() + self.book_wait_s
        while True:
            try:
                got = self.recorder.call_in_loop(lambda: self._parts(minute_ms), max(self.book_wait_s, 1.0))
            except Exception as exc:  # noqa: BLE001 - the feed is down: no book for this candle
                logger.warning("live book feed: no book for minute {} ({}: {})", minute_ms, type(exc).__name__, exc)
                return None
            if got is None:  # the recorder's loop is not running
                return None
            passed, part = got
            if passed or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        if part is None or part.height == 0:
            return None
        return {c: part[c][0] for c in BOOK_COLUMNS}

    def _parts(self, minute_ms: int) -> tuple[bool, pl.DataFrame | None]:
        """In the feed's loop: whether the book passed the minute, and that minute's partial-bar row."""
        book = self.recorder.client.books[self.symbol]  # type: ignore[union-attr]
        minutes = book.minutes if hasattr(book, "minutes") else book.depth.bars
        passed = minutes.next_ms > minute_ms + _MINUTE_MS
        if minutes.minute < 0 and not minutes.rows:
            return passed, None
        parts = book.parts()
        ts = pl.lit(minute_ms * 1000).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        return passed, parts.filter((pl.col("ts") == ts) & pl.col("mid_close").is_not_null())

    def fallback(self) -> None:
        """Ask the candle provider for its REST fallback (the book has none: its columns stay missing)."""
        self.inner.fallback()

    def close(self) -> None:
        """Stop the book feed and the inner provider."""
        self.recorder.request_stop()
        self._thread.join(10)
        self.inner.close()


def _with_extras(bar: Bar, row: dict[str, Any]) -> Bar:
    extras = dict(bar.extras or {})
    extras.update(row)
    return Bar(bar.open_time_ms, bar.open, bar.high, bar.low, bar.close, bar.volume, quote_volume=bar.quote_volume,
               source=bar.source, next_open=bar.next_open, extras=extras)


def with_book_features(provider: DataProvider, feature_names: Sequence[str], symbol: str, *,
                       mode: str = "live", book_feed: bool = True, computed: Sequence[str] = (),
                       **kw: Any) -> DataProvider:
    """Wrap ``provider`` with the live book when the bundle's features need it (else return it unchanged).

    ``mode`` picks Binance USD-M's testnet or production market data; ``QUANTNB_BOOK_WS_URL`` and
    ``QUANTNB_BOOK_REST_URL`` override them (a loopback server in tests).
    """
    import os

    from quantnb.record import BINANCE_REST_URL, BINANCE_TESTNET_REST_URL, BINANCE_TESTNET_WS_URL, BINANCE_WS_URL

    book = check_live_features(feature_names, book_feed=book_feed, computed=computed)
    if not book:
        return provider
    ws, rest = (BINANCE_TESTNET_WS_URL, BINANCE_TESTNET_REST_URL) if mode == "testnet" else (BINANCE_WS_URL,
                                                                                            BINANCE_REST_URL)
    kw.setdefault("ws_url", os.environ.get("QUANTNB_BOOK_WS_URL") or ws)
    kw.setdefault("rest_url", os.environ.get("QUANTNB_BOOK_REST_URL") or rest)
    logger.info("live/book_feed: the agent needs order-book features {}; starting the live book of {} ({})", book,
                symbol, kw["ws_url"])
    return BookFeatureProvider(provider, symbol, **kw)
