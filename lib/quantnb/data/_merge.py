"""Merge partial bars of many files into final bars per symbol and UTC day."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl
from loguru import logger

from quantnb.data._bars import flag_gaps
from quantnb.data._schema import (
    BAR_SCHEMA,
    BOOK_FIELDS,
    BOOK_RANK,
    MID_FIELDS,
    OHLCV_FIELDS,
    OHLCV_RANK,
    PART_SCHEMA,
    TRADE_FIELDS,
    conform_parts,
)
from quantnb.errors import DataError

_INSTRUMENT = ["venue", "market", "symbol"]
_KEYS = [*_INSTRUMENT, "ts"]


def _pick(frame: pl.DataFrame, rank: dict[str, int]) -> pl.DataFrame:
    """Keep one row per (instrument, ts): lowest rank, then file name, then values (total order)."""
    ranked = frame.with_columns(_rank=pl.col("source").replace_strict(rank, return_dtype=pl.Int64))
    order = [*_KEYS, "_rank", "file", *[c for c in PART_SCHEMA if c not in (*_KEYS, "source", "file")]]
    return ranked.sort(order, nulls_last=True).unique(_KEYS, keep="first", maintain_order=True)


def _file_conflicts(books: pl.DataFrame) -> pl.DataFrame:
    """Per file: the minutes whose book data another file gave instead (instrument, file, used, minutes, first)."""
    used = _pick(books, BOOK_RANK).select(*_KEYS, used=pl.col("file"))
    lost = books.join(used, on=_KEYS, how="inner").filter(pl.col("file") != pl.col("used"))
    return (lost.group_by(*_INSTRUMENT, "file", "used")
            .agg(minutes=pl.len(), first=pl.col("ts").min()).sort(*_INSTRUMENT, "file", "used"))


def _book_rows(parts: Sequence[pl.DataFrame]) -> pl.DataFrame | None:
    frames = [conform_parts(p).with_columns(pl.col("venue", "market").fill_null("unknown")) for p in parts if p.height]
    books = pl.concat(frames).filter(pl.col("source").is_in(list(BOOK_RANK))) if frames else None
    return books if books is not None and books.height else None


def book_conflicts(parts: Sequence[pl.DataFrame]) -> list[dict[str, object]]:
    """Return, per input file, the minutes of book data that another file of its instrument gave instead.

    Two files of one instrument cover the same minutes: a second capture of a day, or a file
    of another market in this market's folder (a spot file among linear ones). :func:`merge_parts`
    keeps one file's book per minute; the other file's rows are not used, and this says which.

    Parameters
    ----------
    parts : sequence of polars.DataFrame
        ``FileIngest.bars`` frames, as given to :func:`merge_parts`.

    Returns
    -------
    list of dict
        One dict per (instrument, file not used, file used): ``instrument``
        (``venue/market/SYMBOL``), ``file``, ``used``, ``minutes`` (int) and ``first``
        (ISO 8601 UTC of the first such minute); sorted.
    """
    books = _book_rows(parts)
    if books is None:
        return []
    return [{"instrument": instrument_path(v, m, sym), "file": f, "used": u, "minutes": n, "first": t.isoformat()}
            for v, m, sym, f, u, n, t in _file_conflicts(books).iter_rows()]


def _warn_conflicts(books: pl.DataFrame) -> None:
    for v, m, sym, file, used, n, first in _file_conflicts(books).iter_rows():
        logger.warning("merge: {}: {} minute(s) of {} from {} on have book data from {} too, which is used "
                       "instead; two files of one instrument (a second copy, or a file of another market in "
                       "this market's folder?)", file, n, instrument_path(v, m, sym), first.isoformat(), used)


def instrument_path(venue: str, market: str, symbol: str) -> str:
    """Return ``<venue>/<market>/<SYMBOL>``, the instrument's folder under the ETL's output directory.

    Parameters
    ----------
    venue, market : str
        E.g. ``"bybit"`` and ``"linear"``.
    symbol : str
        Exchange symbol; upper-cased in the path.
    """
    return f"{venue}/{market}/{symbol}"


def merge_parts(parts: Sequence[pl.DataFrame]) -> dict[tuple[str, dt.date], pl.DataFrame]:
    """Combine partial bars of many files into final 1-minute bars per instrument and UTC day.

    An instrument is ``venue, market, symbol`` (e.g. ``bybit, linear, BTCUSDT`` and
    ``bybit, spot, BTCUSDT`` are two): parts of two instruments never merge. A part
    without ``venue``/``market`` columns counts as ``unknown``. For each instrument and
    minute, the OHLCV fields (``open, high, low, close, volume``, and ``n_trades,
    buy_volume`` where trades exist) come from the highest-priority source that has the
    minute: trades CSV > stream trades (Binance capture) > OHLCV CSV > mid of a book (mid
    open/high/low/close, volume null). The book fields come from a book source (Binance
    capture before Bybit file if both exist). Ties between files of the same source are
    broken by the ``file`` column (the input's path), then by value, so the result does
    not depend on the order of ``parts``. ``gap_before`` is True when the instrument's
    previous bar (also across days) is 2 minutes or more earlier. ``ohlcv_source`` names
    the source used.

    Parameters
    ----------
    parts : sequence of polars.DataFrame
        ``FileIngest.bars`` frames (schema ``PART_SCHEMA``), in any order.

    Returns
    -------
    dict of (str, datetime.date) to polars.DataFrame
        ``(instrument, UTC day) -> bars`` where instrument is ``<venue>/<market>/<SYMBOL>``
        (:func:`instrument_path`), with schema ``BAR_SCHEMA``, sorted by ``ts``; keys
        in sorted order. Empty if there is no row.

    Raises
    ------
    DataError
        If a part holds an unknown ``source`` or lacks the ``symbol``, ``ts`` or
        ``source`` column (a foreign or damaged shard).
    """
    frames = []
    for i, part in enumerate(parts):
        missing = [c for c in ("symbol", "ts", "source", "file") if c not in part.columns]
        if missing:
            raise DataError(f"merge_parts: part {i} lacks column(s) {missing}; pass FileIngest.bars frames",
                            field=missing[0])
        if part.height:
            frames.append(conform_parts(part).with_columns(pl.col("venue", "market").fill_null("unknown")))
    if not frames:
        return {}
    allp = pl.concat(frames)
    unknown = sorted(set(allp["source"].unique().to_list()) - set(OHLCV_RANK))
    if unknown:
        raise DataError(f"merge_parts: unknown source(s) {unknown}; expected {sorted(OHLCV_RANK)}", field="source")
    is_book = pl.col("source").is_in(list(BOOK_RANK))
    as_ohlcv = allp.with_columns(
        [pl.when(is_book).then(pl.col(m)).otherwise(pl.col(o)).alias(o)
         for o, m in zip(OHLCV_FIELDS[:4], MID_FIELDS, strict=True)]  # a book has no volume: stays null
    ).filter(pl.col("open").is_not_null())
    ohlcv = _pick(as_ohlcv, OHLCV_RANK).select(*_KEYS, *OHLCV_FIELDS, *TRADE_FIELDS, ohlcv_source="source")
    books = allp.filter(is_book)
    _warn_conflicts(books)
    book = _pick(books, BOOK_RANK).select(*_KEYS, *BOOK_FIELDS)
    bars = (
        ohlcv.join(book, on=_KEYS, how="full", coalesce=True)
        .sort(_KEYS)
        .with_columns(gap_before=flag_gaps(pl.col("ts"), over=_INSTRUMENT), _day=pl.col("ts").dt.date())
    )
    out: dict[tuple[str, dt.date], pl.DataFrame] = {}
    for (venue, market, symbol, day), frame in sorted(bars.partition_by([*_INSTRUMENT, "_day"], as_dict=True).items()):
        key = (instrument_path(venue, market, symbol), day)
        out[key] = frame.select([pl.col(c).cast(t) for c, t in BAR_SCHEMA.items()]).sort("ts")
    logger.info("merge: {} part row(s) -> {} bar(s) in {} instrument-day(s); {} gap(s)", allp.height, bars.height,
                len(out), int(bars["gap_before"].sum()))
    return out
