from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import polars as pl
from loguru import logger

from quantnb.classifier._bars import _MINUTE_US, check_bars
from quantnb.errors import ConfigError, DataError


@dataclass(frozen=True)
class DataSplits:
    """Chronological train / validation / test frames separated by an embargo."""

    train: pl.DataFrame
    val: pl.DataFrame
    test: pl.DataFrame
    embargo_min: int

    def spans(self) -> dict[str, dict[str, Any]]:
        """Return each split's first and last ``ts`` (ISO 8601) and row count, for metadata and logs."""
        out: dict[str, dict[str, Any]] = {}
        for name, frame in (("train", self.train), ("val", self.val), ("test", self.test)):
            ts = frame.get_column("ts")
            first, last = cast(datetime, ts.min()), cast(datetime, ts.max())
            out[name] = {"start": first.isoformat() if frame.height else None,
                         "end": last.isoformat() if frame.height else None,
                         "rows": frame.height}
        return out


def _check_frac(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) < 1.0:
        raise ConfigError(f"{name}: got {value!r}; give a fraction strictly between 0 and 1, e.g. 0.7")
    return float(value)


def chronological_split(
    df: pl.DataFrame,
    *,
    train_frac: float,
    val_frac: float,
    lookahead_min: int,
    embargo_min: int | None = None,
) -> DataSplits:
    """Split labelled bars in time order into train, validation and test, with an embargo.

    The first ``train_frac`` of the rows go to train, the next ``val_frac`` to validation, the rest
    to test. Then every bar less than or equal to ``embargo_min`` minutes after the last bar of
    the previous split is dropped, so the first bar of a split is more than ``embargo_min`` minutes
    after the last bar of the split before. With ``embargo_min >= lookahead_min`` no label window
    ``(t, t + lookahead]`` of one split reaches a bar of the next (purging, López de Prado,
    *Advances in Financial Machine Learning*, 2018, ch. 7.4). In contiguous data that is at least
    ``lookahead_min`` rows between splits.

    Parameters
    ----------
    df : polars.DataFrame
        Bars with ``ts`` (Datetime, strictly increasing), usually the output of ``label_bars``.
    train_frac, val_frac : float
        Fractions of the rows in (0, 1); ``train_frac + val_frac < 1`` (the rest is test).
    lookahead_min : int
        The labelling lookahead, minutes, >= 1.
    embargo_min : int, optional
        Minutes embargoed after each split; default ``lookahead_min``; must be >= ``lookahead_min``.

    Returns
    -------
    DataSplits
        The three frames and the embargo used.

    Raises
    ------
    ConfigError
        If a fraction or the embargo is out of range (the message names the field).
    DataError
        If ``ts`` is invalid, or a split ends up empty (too few rows for these fractions).
    """
    train_frac = _check_frac("train_frac", train_frac)
    val_frac = _check_frac("val_frac", val_frac)
    if train_frac + val_frac >= 1.0:
        raise ConfigError(f"val_frac: train_frac + val_frac = {train_frac + val_frac:g} leaves no test rows; "
                          "keep their sum below 1")
    if isinstance(lookahead_min, bool) or not isinstance(lookahead_min, numbers.Integral) or lookahead_min < 1:
        raise ConfigError(f"lookahead_min: got {lookahead_min!r}; give the labelling lookahead in minutes, >= 1")
    embargo = int(lookahead_min) if embargo_min is None else embargo_min
    if isinstance(embargo, bool) or not isinstance(embargo, numbers.Integral) or embargo < lookahead_min:
        raise ConfigError(f"embargo_min: got {embargo_min!r}; it must be a whole number of minutes >= "
                          f"lookahead_min ({lookahead_min}) so no label window straddles two splits")
    check_bars(df, what="labelled bars")
    n = df.height
    n_train = math.floor(n * train_frac)
    n_val = math.floor(n * val_frac)
    parts = [df.slice(0, n_train), df.slice(n_train, n_val), df.slice(n_train + n_val)]
    for i in (1, 2):
        if parts[i - 1].height == 0:
            break
        last_us = parts[i - 1].get_column("ts").dt.epoch("us")[-1]
        cutoff = last_us + int(embargo) * _MINUTE_US
        parts[i] = parts[i].filter(pl.col("ts").dt.epoch("us") > cutoff)
    for name, part in zip(("train", "val", "test"), parts, strict=True):
        if part.height == 0:
            raise DataError(f"{name} split is empty: {n} rows with train_frac={train_frac}, val_frac={val_frac} "
                            f"and a {embargo}-minute embargo; use more data or larger fractions")
    splits = DataSplits(*parts, embargo_min=int(embargo))
    logger.info("split: train {} rows, val {} rows, test {} rows, embargo {} min (dropped {} rows)",
                parts[0].height, parts[1].height, parts[2].height, embargo, n - sum(p.height for p in parts))
    return splits
