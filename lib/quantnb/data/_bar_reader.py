"""The one reader and checker of ETL bar files (Parquet, one symbol, 1-minute bars)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import polars as pl

from quantnb.data._bar_rules import data_columns
from quantnb.data._inputs import expand_glob, traversed_folder
from quantnb.errors import ConfigError, DataError

_MINUTE_US = 60_000_000


def check_bars(df: pl.DataFrame, *, what: str = "bars") -> None:
    """Refuse a frame whose ``ts`` is missing, not a datetime, off the minute grid, unsorted or duplicated.

    Parameters
    ----------
    df : polars.DataFrame
        Bars of one symbol with a ``ts`` column (minute start, Datetime[us, UTC]).
    what : str, default "bars"
        What the frame is, for messages (e.g. a file name).

    Raises
    ------
    DataError
        Naming ``what``, the row and the fix.
    """
    if "ts" not in df.columns:
        raise DataError(
            f"{what}: no 'ts' column (columns: {df.columns}); bars need a 'ts' Datetime column holding "
            "each minute's start, as the ETL writes it",
            field="ts"
        )
    dtype = df.schema["ts"]
    if not isinstance(dtype, pl.Datetime):
        raise DataError(
            f"{what}: column 'ts' has dtype {dtype}, expected Datetime[us, UTC]; parse it first, e.g. "
            "pl.col('ts').str.to_datetime(time_unit='us', time_zone='UTC')",
            field="ts"
        )
    if df.height == 0:
        return
    epoch = df.get_column("ts").dt.epoch("us")
    if epoch.null_count():
        row = cast(int, epoch.is_null().arg_max())
        raise DataError(f"{what}: row {row}: 'ts' is null; drop or repair that bar", bar=row, field="ts")
    off_grid = (epoch % _MINUTE_US) != 0
    if off_grid.any():
        row = cast(int, off_grid.arg_max())
        raise DataError(
            f"{what}: row {row}: ts {df['ts'][row]} is not on the minute grid; bars must be 1-minute bars "
            "stamped at the minute start — resample them first",
            bar=row, field="ts"
        )
    if df.height > 1:
        steps = epoch.diff().slice(1)
        if cast(int, steps.min()) <= 0:
            row = cast(int, (steps <= 0).arg_max()) + 1
            if "symbol" in df.columns and df.get_column("symbol").n_unique() > 1:
                raise DataError(
                    f"{what}: rows of several symbols ({df.get_column('symbol').unique().sort().to_list()[:5]}); "
                    "process one symbol at a time, e.g. df.filter(pl.col('symbol') == 'BTCUSDT')",
                    field="symbol"
                )
            raise DataError(
                f"{what}: row {row}: ts {df['ts'][row]} is not after the previous bar's {df['ts'][row - 1]}; "
                "sort the bars by ts and drop duplicate minutes",
                bar=row, field="ts"
            )


def bar_files(root: str | os.PathLike[str], pattern: str) -> list[Path]:
    """Return the files under ``root`` matching the glob ``pattern`` (``**`` recurses), sorted."""
    return [p for p in expand_glob(Path(root), pattern) if p.is_file() and not traversed_folder(pattern, p)]


def read_bar_files(paths: Sequence[str | os.PathLike[str]]) -> pl.DataFrame:
    """Read Parquet bar files into one frame sorted by ``ts`` (columns unified), unchecked.

    For callers that filter the frame first (e.g. one symbol of several); :func:`read_bars`
    reads and checks.

    Parameters
    ----------
    paths : sequence of str or path-like
        Parquet files, at least one.

    Returns
    -------
    polars.DataFrame
        ``diagonal_relaxed`` concatenation, sorted by ``ts``.

    Raises
    ------
    ConfigError
        If ``paths`` is empty.
    DataError
        If a file cannot be read (naming it) or has no ``ts``.
    """
    if not paths:
        raise ConfigError("bars: no file given; pass at least one Parquet file of ETL bars")
    frames = []
    for p in paths:
        try:
            with open(p, "rb") as fh:  # by handle: a path may hold '*', '?' or '[' (never a glob)
                frames.append(pl.read_parquet(fh))
        except (OSError, pl.exceptions.PolarsError) as e:
            raise DataError(f"{p}: cannot read the bar file ({e}); re-run the etl stage for it", path=str(p)) from e
        if "ts" not in frames[-1].columns:
            raise DataError(f"{p}: no 'ts' column (columns: {frames[-1].columns}); not an ETL bar file",
                            path=str(p), field="ts")
    return pl.concat(frames, how="diagonal_relaxed").sort("ts")


def read_bars(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | pl.DataFrame, *,
              root: str | os.PathLike[str] = ".", drop_empty: bool = True) -> pl.DataFrame:
    """Read bars for research or a replay: one instrument, in time order, checked, empty columns dropped.

    The one reader of bars, for the agent stage, the live replay and the tests alike. It
    checks the series (:func:`check_bars`: minute grid, strictly increasing ``ts``), not each
    bar's values: the ETL wrote bars its rules accepted, and the trader's guard judges every
    candle of a replay by the same rules (:mod:`quantnb.data._bar_rules`).

    Parameters
    ----------
    source : str, path-like, sequence of them, or polars.DataFrame
        A glob pattern (relative to ``root``), the Parquet files themselves, or bars already
        in memory (e.g. ``data/processed/bybit/linear/BTCUSDT/*.parquet``).
    root : str or path-like, default "."
        Base of a relative glob pattern.
    drop_empty : bool, default True
        Keep only the columns that hold data (:func:`~quantnb.data._bar_rules.data_columns`:
        the ETL writes every bar column, an OHLCV source leaves the book columns empty).

    Returns
    -------
    polars.DataFrame
        ``ts`` (Datetime[us, UTC]), ``open, high, low, close`` and the other columns
        (unified across files, ``diagonal_relaxed``), sorted by ``ts``.

    Raises
    ------
    ConfigError
        If nothing matches the pattern, or the bars are of several instruments
        (``venue``/``market``/``symbol``).
    DataError
        If a file cannot be read (naming it), a price column is missing or empty, or the bars
        fail :func:`check_bars` (e.g. the same minute in two files).
    """
    if isinstance(source, pl.DataFrame):
        bars, where, first = source.sort("ts") if "ts" in source.columns else source, "bars <DataFrame>", None
    else:
        if isinstance(source, str | os.PathLike):
            paths = bar_files(root, str(source))
            if not paths:
                raise ConfigError(f"bars: no file matches {str(source)!r} under {Path(root).resolve()}; "
                                  "run the etl stage first or fix the glob")
        else:
            paths = [Path(p) for p in source]
        bars, first = read_bar_files(paths), paths[0]
        where = f"bars from {first}" + (f" and {len(paths) - 1} more files" if len(paths) > 1 else "")
    keys = [c for c in ("venue", "market", "symbol") if c in bars.columns]
    instruments = bars.select(keys).unique().sort(keys).rows() if keys else []
    if len(instruments) > 1:
        names = ", ".join("/".join(map(str, i)) for i in instruments[:4])
        raise ConfigError(f"{where} hold {len(instruments)} instruments ({names}); "
                          "the ETL writes one folder per instrument (<venue>/<market>/<SYMBOL>/): point at one of them")
    if drop_empty:
        bars = bars.select(data_columns(bars))
    missing = [c for c in ("open", "high", "low", "close") if c not in bars.columns]
    if missing:
        raise DataError(f"{where}: price column(s) {missing} missing or empty (columns: {bars.columns}); "
                        "expected the ETL's bars", path=None if first is None else str(first), field=missing[0])
    check_bars(bars, what=where)
    return bars
