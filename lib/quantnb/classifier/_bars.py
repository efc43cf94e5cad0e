"""Minute-grid helpers of the research datasets; the bar check itself lives in :mod:`quantnb.data`."""

from __future__ import annotations

import polars as pl

from quantnb.data import check_bars
from quantnb.features import segment_start_expr

__all__ = ["check_bars", "break_before_expr", "_MINUTE_US"]

_MINUTE_US = 60_000_000


def break_before_expr(df: pl.DataFrame) -> pl.Expr:
    """Return an expression, True where a bar starts a segment (the one gap policy of :mod:`quantnb.features`)."""
    return segment_start_expr(df.columns).alias("_break_before")
