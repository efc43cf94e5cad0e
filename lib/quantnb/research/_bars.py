from __future__ import annotations

import polars as pl

from quantnb.errors import DataError

_MINUTE_US = 60_000_000


def check_bars(df: pl.DataFrame, *, what: str = "bars") -> None:
    """Refuse a frame whose ``ts`` is missing, not a datetime, off the minute grid, unsorted or duplicated."""
    if "ts" not in df.columns:
        raise DataError(
            f"{what}: no 'ts' column (columns: {df.columns}); bars need a 'ts' Datetime column holding "
            "each minute's start, as the ETL writes it"
        )
    dtype = df.schema["ts"]
    if not isinstance(dtype, pl.Datetime):
        raise DataError(
            f"{what}: column 'ts' has dtype {dtype}, expected Datetime[us, UTC]; parse it first, e.g. "
            "pl.col('ts').str.to_datetime(time_unit='us', time_zone='UTC')"
        )
    if df.height == 0:
        return
    epoch = df.get_column("ts").dt.epoch("us")
    if epoch.null_count():
        row = int(epoch.is_null().arg_max())
        raise DataError(f"{what}: row {row}: 'ts' is null; drop or repair that bar")
    off_grid = (epoch % _MINUTE_US) != 0
    if off_grid.any():
        row = int(off_grid.arg_max())
        raise DataError(
            f"{what}: row {row}: ts {df['ts'][row]} is not on the minute grid; bars must be 1-minute bars "
            "stamped at the minute start — resample them first"
        )
    if df.height > 1:
        steps = epoch.diff().slice(1)
        if steps.min() <= 0:  # type: ignore[operator]
            row = int((steps <= 0).arg_max()) + 1
            if "symbol" in df.columns and df.get_column("symbol").n_unique() > 1:
                raise DataError(
                    f"{what}: rows of several symbols ({df.get_column('symbol').unique().sort().to_list()[:5]}); "
                    "process one symbol at a time, e.g. df.filter(pl.col('symbol') == 'BTCUSDT')"
                )
            raise DataError(
                f"{what}: row {row}: ts {df['ts'][row]} is not after the previous bar's {df['ts'][row - 1]}; "
                "sort the bars by ts and drop duplicate minutes"
            )


def minute_index(df: pl.DataFrame) -> pl.Expr:
    """Return an expression of the integer minutes since the epoch of each bar's ``ts``."""
    return (pl.col("ts").dt.epoch("us") // _MINUTE_US).alias("_minute")


def break_before_expr(df: pl.DataFrame) -> pl.Expr:
    """Return an expression, True where a bar does not directly follow its predecessor (first row, gap, gap flag)."""
    step = pl.col("ts").dt.epoch("us").diff()
    brk = step.is_null() | (step != _MINUTE_US)
    if "gap_before" in df.columns:
        brk = brk | pl.col("gap_before").fill_null(False)
    return brk.alias("_break_before")
