"""CSV sources read with polars: 1-minute OHLCV bars and Binance public trades files."""

from __future__ import annotations

import csv
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import polars as pl

from quantnb.data._bar_rules import judge_bars, oldest_first
from quantnb.data._bars import MINUTE_MS, minute_start, trades_to_bars
from quantnb.data._io import IO_ERRORS, MAX_LINE_BYTES, LineStream, check_line_lengths, line_too_long, snippet
from quantnb.data._quality import LOG_LIMIT_PER_KIND, QualityReport
from quantnb.errors import DataError

OHLCV_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
TRADE_COLUMNS = ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker")
_LINE = "line"  # 1-based file line of each row (header = line 1)


def _header(path: Path, shown: Path | None = None) -> list[str]:
    with open(path, "rb") as fh:
        raw = fh.readline(MAX_LINE_BYTES + 1)
    if len(raw) > MAX_LINE_BYTES:
        raise line_too_long(shown or path, 1)
    first = raw.decode("utf-8", "replace").strip()
    if not first:
        raise DataError(f"{shown or path} line 1: the file is empty; re-download it", path=str(shown or path), line=1)
    return [c.strip().lower() for c in first.split(",")]


def _locate_problem(path: Path, n_fields: int) -> tuple[int, str] | None:
    """Find the first line polars could not read: not UTF-8, a stray quote, or another number of fields."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(LineStream(fh, path), 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return lineno, f"not UTF-8 text (byte {exc.start + 1} of the line is {raw[exc.start:exc.start + 1]!r})"
            if not text.strip():
                continue
            try:
                (row,) = csv.reader([text])
            except (csv.Error, ValueError) as exc:
                return lineno, f"not a CSV row ({exc}): {snippet(text)}"
            if any('"' in f for f in row):
                return lineno, f"a quote inside an unquoted field: {snippet(text)}"
            if len(row) != n_fields:
                return lineno, f"{len(row)} fields, expected {n_fields}: {snippet(text)}"
    return None


def _read_strings(path: Path, columns: Sequence[str], has_header: bool, shown: Path | None = None) -> pl.DataFrame:
    shown = shown or path  # the file the user named (a zip) when ``path`` is its extracted member
    with open(path, "rb") as fh:
        check_line_lengths(fh, shown)  # polars would hold a huge line whole
    try:
        frame = pl.read_csv(path, infer_schema=False, has_header=has_header, glob=False,
                            new_columns=None if has_header else list(columns))
    except pl.exceptions.PolarsError as exc:
        n_fields = len(_header(path, shown)) if has_header else len(columns)
        found = _locate_problem(path, n_fields)
        if found is not None:
            line, what = found
            raise DataError(f"{shown} line {line}: {what}; fix or remove the line, or re-download the file",
                            path=str(shown), line=line) from exc
        raise DataError(f"{shown}: unreadable CSV ({str(exc).splitlines()[0]}); fix or re-download the file",
                        path=str(shown)) from exc
    frame = frame.rename({c: c.strip().lower() for c in frame.columns})
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path} line 1: missing column(s) {missing}; expected {list(columns)} "
                        "(header row or Binance's header-less layout)", path=str(path), line=1)
    return frame.with_row_index(_LINE, offset=2 if has_header else 1).with_columns(pl.col(_LINE).cast(pl.Int64))


def _numbers(path: Path, frame: pl.DataFrame, columns: Sequence[str], dtype: pl.DataType) -> pl.DataFrame:
    """Cast String columns to ``dtype``; raise on the first value that does not parse (naming its line)."""
    out = frame.with_columns([pl.col(c).str.strip_chars().cast(dtype, strict=False).alias(c) for c in columns])
    for c in columns:
        bad = frame.filter(pl.col(c).is_not_null() & out[c].is_null())
        if bad.height:
            line, value = bad[_LINE][0], bad[c][0]
            raise DataError(f"{path} line {line}: column {c!r} value {value!r} is not a number; fix or remove the "
                            "row, or re-download the file", path=str(path), line=line)
    return out


def _fatal_prices(path: Path, frame: pl.DataFrame, columns: Sequence[str]) -> None:
    """Raise on an empty, NaN or infinite price (the row cannot be a bar or a trade)."""
    for c in columns:
        bad = frame.filter(pl.col(c).is_null() | ~pl.col(c).is_finite())
        if bad.height:
            line, value = bad[_LINE][0], bad[c][0]
            raise DataError(f"{path} line {line}: {c} is {'empty' if value is None else value!r} (NaN, infinite or "
                            f"missing price; {bad.height} such row(s)); the file is corrupt — re-download it or "
                            "remove the rows", path=str(path), line=line)


def _flag_rows(report: QualityReport, kind: str, rows: pl.DataFrame, message: str) -> None:
    """Count every row of ``rows`` under ``kind``; log the first ones with their lines."""
    if not rows.height:
        return
    for line in rows[_LINE].head(LOG_LIMIT_PER_KIND).to_list():
        report.flag(kind, line, message)
    if rows.height > LOG_LIMIT_PER_KIND:
        report.flag(kind, None, message, count=rows.height - LOG_LIMIT_PER_KIND)


def _flag_conflicts(report: QualityReport, frame: pl.DataFrame, dups: pl.DataFrame, key: str,
                    values: Sequence[str]) -> None:
    """Count the duplicates of ``key`` whose ``values`` differ from the first row (the one kept), with both values."""
    if not dups.height:
        return
    kept = frame.filter(pl.col(key).is_first_distinct()).select(key, *values, pl.col(_LINE).alias("_kept_line"),
                                                                 *[pl.col(v).alias(f"_kept_{v}") for v in values])
    pairs = dups.select(key, *values, _LINE).join(kept.drop(values), on=key, how="left")
    differs = pl.any_horizontal([pl.col(v).ne_missing(pl.col(f"_kept_{v}")) for v in values])
    conflicts = pairs.filter(differs).sort(_LINE)
    for row in conflicts.head(LOG_LIMIT_PER_KIND).iter_rows(named=True):
        label = key
        if key == "timestamp":  # epoch ms -> ISO
            label = f"timestamp {pl.Series([row[key]]).cast(pl.Datetime('ms', 'UTC'))[0].isoformat()}"
        else:
            label = f"{key} {row[key]}"
        report.conflict(row[_LINE], label, row["_kept_line"], {v: row[f"_kept_{v}"] for v in values},
                        {v: row[v] for v in values})
    if conflicts.height > LOG_LIMIT_PER_KIND:
        report.flag("conflicting_duplicates", None, f"more duplicates of {key} with other values than the row kept "
                    "(the first row of each is kept)", count=conflicts.height - LOG_LIMIT_PER_KIND)


def _epoch_ms(path: Path, col: pl.Series) -> pl.Series:
    """Parse a timestamp column: epoch ms, s or us (by magnitude) or a date-time string, as UTC epoch ms."""
    text = col.str.strip_chars()
    sample = text.drop_nulls().head(1).to_list()
    if sample and sample[0].lstrip("-").isdigit():
        num = text.cast(pl.Int64, strict=False)
        big = cast(int, num.drop_nulls().abs().max() or 0)
        scale = 1000 if big < 10**11 else (1 if big < 10**14 else 0)
        return (num * scale if scale else num // 1000).alias(col.name)
    dt = text.str.to_datetime(strict=False, time_unit="us")
    if cast(pl.Datetime, dt.dtype).time_zone is None:
        dt = dt.dt.replace_time_zone("UTC")
    return (dt.dt.convert_time_zone("UTC").dt.epoch("us") // 1000).alias(col.name)


def _check_times(path: Path, frame: pl.DataFrame, col: str) -> pl.DataFrame:
    raw = frame[col]
    ms = _epoch_ms(path, raw)
    bad = frame.filter(raw.is_not_null() & ms.is_null())
    if bad.height or raw.null_count():
        row = bad if bad.height else frame.filter(raw.is_null())
        line = row[_LINE][0]
        raise DataError(f"{path} line {line}: {col} {row[col][0]!r} is not a timestamp (expected "
                        "'YYYY-MM-DD HH:MM:SS[.ffffff]' UTC or epoch ms/s); fix or remove the row",
                        path=str(path), line=line)
    return frame.with_columns(ms)


def _order_checks(report: QualityReport, frame: pl.DataFrame, ts: str, what: str) -> None:
    """Count out-of-order rows and time gaps of 2 minutes or more (in file order / time order)."""
    prev = pl.col(ts).shift(1)
    _flag_rows(report, "out_of_order", frame.filter(pl.col(ts) < prev), f"{what} earlier than the row before it")
    ordered = frame.sort(ts, maintain_order=True)
    gaps = ordered.filter((pl.col(ts) - pl.col(ts).shift(1)) >= 2 * MINUTE_MS)
    _flag_rows(report, "time_gaps", gaps, f"2 minutes or more since the previous {what}")


def read_ohlcv(path: Path, report: QualityReport) -> pl.DataFrame:
    """Read a 1-minute OHLCV CSV; return the rows the bar rules accept (``ts, open, high, low, close, volume``).

    Header ``timestamp, open, high, low, close, volume``; ``timestamp`` is epoch ms, s or us (by
    magnitude) or ``YYYY-MM-DD HH:MM:SS[.ffffff]`` UTC. ``ts`` comes out as Datetime[us, UTC]
    minute starts, increasing; every bar rule broken is counted in ``report`` with its line.
    """
    frame = _read_strings(path, OHLCV_COLUMNS, has_header=True)
    frame = _numbers(path, frame, OHLCV_COLUMNS[1:], pl.Float64())
    frame = oldest_first(_check_times(path, frame, "timestamp"), "timestamp", path)
    report.lines, report.messages = frame.height + 1, frame.height
    unaligned = frame.filter(pl.col("timestamp") % MINUTE_MS != 0)
    _flag_rows(report, "unaligned_ts", unaligned, "timestamp not on a minute boundary; floored to the minute")
    frame = frame.with_columns(pl.col("timestamp") // MINUTE_MS * MINUTE_MS)
    kept = judge_bars(frame, report, ts="timestamp", line=_LINE)
    _flag_conflicts(report, kept, frame.join(kept, on=_LINE, how="anti").filter(
        pl.col("timestamp").is_in(kept["timestamp"].implode())), "timestamp", OHLCV_COLUMNS[1:])
    frame = kept
    return frame.select(ts=minute_start(pl.col("timestamp")), open="open", high="high", low="low", close="close",
                        volume="volume")


def _trades_path(path: Path, tmp: Path) -> Path:
    """Return the CSV itself, or a zip's CSV member extracted into ``tmp`` (line lengths checked on the way)."""
    if path.suffix.lower() != ".zip":
        return path
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.lower().endswith(".csv")]
            if len(names) != 1:
                raise DataError(f"{path}: the zip archive holds {len(names)} CSV files; expected exactly one — "
                                "re-download it or unzip it and pass the CSV", path=str(path))
            out = tmp / "member.csv"
            with zf.open(names[0]) as member, open(out, "wb") as fh:
                check_line_lengths(member, path, copy_to=fh)  # stops at a huge line, before it is on disk
            return out
    except (zipfile.BadZipFile, *IO_ERRORS) as exc:
        raise DataError(f"{path}: not a valid zip archive ({exc}); re-download it", path=str(path)) from exc


def read_trades(path: Path, report: QualityReport) -> pl.DataFrame:
    """Read a Binance public trades CSV (zip or plain); return 1-minute bars.

    Format: https://github.com/binance/binance-public-data (trades files).
    """
    with tempfile.TemporaryDirectory(prefix="quantnb-trades-") as tmp:
        member = _trades_path(path, Path(tmp))
        header = _header(member, path)
        has_header = not header[0].lstrip("-").isdigit()
        spot = not has_header and len(header) == len(TRADE_COLUMNS) + 1  # Binance spot: + is_best_match
        columns = (*TRADE_COLUMNS, "is_best_match") if spot else TRADE_COLUMNS
        frame = _read_strings(member, columns, has_header, shown=path)
    frame = _numbers(path, frame, ("id",), pl.Int64())
    frame = _numbers(path, frame, ("price", "qty"), pl.Float64())
    _fatal_prices(path, frame, ("price",))
    frame = _check_times(path, frame, "time")
    report.lines, report.messages = frame.height + int(has_header), frame.height
    frame = frame.with_columns(is_buyer_maker=pl.col("is_buyer_maker").str.strip_chars().str.to_lowercase() == "true")
    _flag_rows(report, "non_positive_price", frame.filter(pl.col("price") <= 0), "trade price <= 0; trade skipped")
    _flag_rows(report, "nan_inf", frame.filter(pl.col("qty").is_null() | ~pl.col("qty").is_finite()),
               "trade qty NaN, infinite or empty; trade skipped")
    _flag_rows(report, "negative_size", frame.filter(pl.col("qty") < 0), "trade qty < 0; trade skipped")
    frame = frame.filter((pl.col("price") > 0) & pl.col("qty").is_finite() & (pl.col("qty") >= 0))
    _order_checks(report, frame, "time", "trade")
    dups = frame.filter(pl.col("id").is_duplicated() & ~pl.col("id").is_first_distinct())
    _flag_rows(report, "duplicates", dups, "trade id repeats an earlier row; the first row is kept")
    _flag_conflicts(report, frame, dups, "id", ("price", "qty", "time", "is_buyer_maker"))
    frame = frame.unique("id", keep="first", maintain_order=True)
    report.trades = frame.height
    trades = frame.select(ts_ms="time", id="id", price="price", qty="qty", is_buyer_maker="is_buyer_maker")
    return judge_bars(trades_to_bars(trades), report, sequence=False)
