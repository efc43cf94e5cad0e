"""One raw file in, partial 1-minute bars and a quality report out."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import polars as pl
from loguru import logger

import quantnb.data._io as _io
from quantnb.data._archive_csv import (
    FUNDING_SCHEMA,
    read_agg_trades,
    read_book_ticker,
    read_bybit_trades,
    read_funding,
    read_klines,
)
from quantnb.data._binance import read_binance
from quantnb.data._book import OrderBook
from quantnb.data._bybit import read_bybit
from quantnb.data._csv import read_ohlcv, read_trades
from quantnb.data._inputs import check_regular_file
from quantnb.data._quality import QualityReport
from quantnb.data._schema import (
    BINANCE_AGGTRADES,
    BINANCE_BOOK,
    BINANCE_BOOKTICKER,
    BINANCE_KLINES,
    BINANCE_TRADES,
    BYBIT_BOOK,
    BYBIT_TRADES,
    OHLCV_CSV,
    TRADES_CSV,
    conform_parts,
    empty_parts,
)
from quantnb.data._validate import check_policy
from quantnb.errors import DataError


@dataclasses.dataclass
class FileIngest:
    """The result of ingesting one raw file (:func:`ingest_file`).

    ``kind``: the detected file kind; ``symbol``, ``venue``, ``market``: the instrument; ``bars``:
    partial 1-minute bars, ``PART_SCHEMA`` (``venue, market, symbol, ts, source, file`` and the
    fields this source provides, the others null; ``source`` is ``trades_csv``, ``binance_trades``,
    ``ohlcv_csv``, ``binance_book`` or ``bybit_book``, and a Binance capture gives two), sorted by
    ``source, ts``, one row per source and minute; ``quality``: counts and defects; ``n_messages``:
    messages (JSON) or rows (CSV) parsed; ``elapsed_s``: wall time, seconds; ``book``: the final
    book of an order-book source, else None; ``funding``: a funding-rate file's series
    (``FUNDING_SCHEMA``; such a file gives no bars), else None.
    """

    path: Path
    kind: str
    symbol: str
    venue: str
    market: str
    bars: pl.DataFrame
    quality: QualityReport
    n_messages: int
    elapsed_s: float
    book: OrderBook | None = None
    funding: pl.DataFrame | None = None


# The market of a file whose folders name none (and, for a Binance capture, whose events do not tell).
DEFAULT_MARKETS: dict[str, str] = {_io.BYBIT: "linear", _io.BINANCE: "usdm", _io.TRADES: "usdm", _io.OHLCV: "perp",
                                   _io.KLINES: "usdm", _io.AGG_TRADES: "usdm", _io.BOOK_TICKER: "usdm",
                                   _io.FUNDING: "usdm", _io.BYBIT_TRADES: "linear"}
# Archive CSV kinds: the reader and the ``source`` of their partial bars.
_ARCHIVE_READERS: dict[str, tuple[Callable[[Path, QualityReport], pl.DataFrame], str]] = {
    _io.KLINES: (read_klines, BINANCE_KLINES), _io.AGG_TRADES: (read_agg_trades, BINANCE_AGGTRADES),
    _io.BOOK_TICKER: (read_book_ticker, BINANCE_BOOKTICKER), _io.BYBIT_TRADES: (read_bybit_trades, BYBIT_TRADES),
}
DEFAULT_OHLCV_VENUE = "unknown"


def _tag(frame: pl.DataFrame, symbol: str, source: str, key: str) -> pl.DataFrame:
    return conform_parts(frame.with_columns(symbol=pl.lit(symbol), source=pl.lit(source), file=pl.lit(key)))


def _instrument(path: Path, kind: str, report: QualityReport, default_markets: Mapping[str, str] | None,
                ohlcv_venue: str) -> tuple[str, str]:
    """Venue and market of a file: the archive folder layout, else what the reader saw, else the default."""
    venue = _io.VENUES.get(kind, ohlcv_venue)
    from_path = _io.market_from_path(path, kind)
    seen = report.market  # a Binance capture: "usdm" (events carry pu) or "spot"
    if from_path and seen and from_path != seen:
        logger.warning("{}: the folders say market {!r} but the depth events follow the {} rules; using {!r} "
                       "(the folder)", path, from_path, seen, from_path)
    market = from_path or seen or {**DEFAULT_MARKETS, **(default_markets or {})}[kind]
    return venue, market


def ingest_file(path: str | Path, *, skip_until_snapshot: bool = False, on_crossed: str = "raise",
                on_progress: Callable[[int], None] | None = None, key: str | None = None,
                default_markets: Mapping[str, str] | None = None,
                ohlcv_venue: str = DEFAULT_OHLCV_VENUE) -> FileIngest:
    """Read one raw file, validate it, and aggregate it into partial 1-minute bars.

    Parameters
    ----------
    path : str or Path
        A file whose name matches one of the patterns of :func:`detect_source`.
    skip_until_snapshot : bool
        Bybit: skip (and count) deltas before the first snapshot instead of raising.
    on_crossed : {"raise", "skip"}
        A book left crossed (best bid > best ask) by a whole message: ``"raise"`` a
        DataError naming the line, or ``"skip"``: count it and leave the update out of
        the features (the minute close carries no book features while crossed). A locked
        book (bid == ask) is counted and kept.
    on_progress : callable, optional
        Called with the line number as minutes close (order-book sources).
    key : str, optional
        The input's identity written to the ``file`` column (the ETL passes the path
        relative to the project); the file name by default.
    default_markets : mapping of str to str, optional
        Source kind to the market of files whose folders name none (Bybit ``linear/``,
        ``spot/``...; Binance ``futures/um/``, ``spot/``...), merged over
        ``DEFAULT_MARKETS``. A Binance capture's events decide before it: ``pu`` present
        means ``usdm``, absent ``spot``.
    ohlcv_venue : str
        Venue of a 1-minute OHLCV CSV (its name and format tell none).

    Returns
    -------
    FileIngest
        Partial bars (combine them with :func:`merge_parts`) and the quality report.

    Raises
    ------
    DataError
        Unknown file name; bad zip or gzip (incl. truncated); a non-JSON or truncated
        line; a missing field or unexpected layout; a Bybit delta before any snapshot
        (unless ``skip_until_snapshot``); a NaN or infinite price or size; a crossed book
        (with ``on_crossed="raise"``); a CSV value that does not parse; a path that is
        not a readable regular file (directory, FIFO, device, broken link). The message
        names the file, the line and the fix.
    ConfigError
        If ``on_crossed`` is not one of the accepted values.
    FileNotFoundError
        If ``path`` does not exist.

    References
    ----------
    Bybit v5 API documentation, "WebSocket Stream > Public > Orderbook" (snapshot/delta,
    size 0 deletes, ``u`` sequence, snapshot with ``u=1`` after a service restart).
    Binance USD-M Futures documentation, "How to manage a local order book correctly"
    (buffer diffs, drop ``u < lastUpdateId``, first event ``U <= lastUpdateId <= u``,
    then ``pu`` equals the previous ``u``).
    """
    check_policy(on_crossed)
    path = Path(path)
    info = _io.detect_source(path)
    problem = check_regular_file(path)  # a directory, FIFO, device, broken link or unreadable file
    if problem is not None:
        if not os.path.lexists(path):
            raise FileNotFoundError(f"{path}: no such file")
        raise DataError(problem, path=str(path))
    t0 = time.perf_counter()
    report = QualityReport(path=str(path), source=info.kind)
    key = key or path.name
    logger.info("{}: reading as {} ({:.1f} kB)", path, info.kind, path.stat().st_size / 1024)
    final: OrderBook | None = None
    funding: pl.DataFrame | None = None
    if info.kind == _io.BYBIT:
        symbol, book, final = read_bybit(path, report, skip_until_snapshot=skip_until_snapshot,
                                         on_crossed=on_crossed, on_progress=on_progress)
        if symbol and symbol != info.symbol:
            logger.warning("{}: the file name says {} but the messages are for {}; using {}",
                           path, info.symbol, symbol, symbol)
        symbol = symbol or info.symbol
        bars = _tag(book, symbol, BYBIT_BOOK, key)
    elif info.kind == _io.BINANCE:
        symbol, book, trades, final = read_binance(path, report, on_crossed=on_crossed, on_progress=on_progress)
        symbol = symbol or info.symbol
        bars = pl.concat([_tag(book, symbol, BINANCE_BOOK, key), _tag(trades, symbol, BINANCE_TRADES, key)])
        report.trades = int(trades["n_trades"].sum())
    elif info.kind == _io.OHLCV:
        symbol = info.symbol
        bars = _tag(read_ohlcv(path, report), symbol, OHLCV_CSV, key)
        report.symbols = [symbol]
    elif info.kind == _io.TRADES:
        symbol = info.symbol
        bars = _tag(read_trades(path, report), symbol, TRADES_CSV, key)
        report.symbols = [symbol]
    elif info.kind in _ARCHIVE_READERS:
        symbol = info.symbol
        reader, source = _ARCHIVE_READERS[info.kind]
        bars = _tag(reader(path, report), symbol, source, key)
        report.symbols = [symbol]
    elif info.kind == _io.FUNDING:
        symbol = info.symbol
        funding = read_funding(path, report).with_columns(symbol=pl.lit(symbol), file=pl.lit(key))
        bars = empty_parts()
        report.symbols = [symbol]
    else:  # pragma: no cover - detect_source returns only the kinds above
        raise DataError(f"{path}: no reader for kind {info.kind!r}", path=str(path))
    venue, market = _instrument(path, info.kind, report, default_markets, ohlcv_venue)
    report.venue, report.market = venue, market
    bars = bars.with_columns(venue=pl.lit(venue), market=pl.lit(market)).select(bars.columns).sort(["source", "ts"])
    if funding is not None:
        funding = funding.with_columns(venue=pl.lit(venue), market=pl.lit(market)).select(
            [pl.col(c).cast(t) for c, t in FUNDING_SCHEMA.items()])
    report.book_updates = int(bars["n_book_updates"].sum())
    report.bars = bars.height
    if bars.height:
        report.first_ts = bars["ts"].min().isoformat()  # type: ignore[union-attr]
        report.last_ts = bars["ts"].max().isoformat()  # type: ignore[union-attr]
    if not bars.height and not (funding is not None and funding.height):
        report.no_data_rows = True
        logger.warning("{}: no data rows ({} line(s), {} message(s)): the file produces no bar; check that it is "
                       "the file you meant (a CSV with a header only, an empty download?)", path, report.lines,
                       report.messages)
    report.finish()
    elapsed = time.perf_counter() - t0
    for source, rows in bars.group_by("source", maintain_order=True).len().iter_rows():
        logger.info("{}: {} rows after the 1-minute resample ({})", path, rows, source)
    logger.info("{}: {} messages processed in {:.2f} s (etl/msgs_per_s={:.0f}); defects: {}", path, report.messages,
                elapsed, report.messages / max(elapsed, 1e-9), report.defects or "none")
    return FileIngest(path, info.kind, symbol, venue, market, bars, report, report.messages, elapsed, final, funding)
