"""The agent's features: the ``quantnb.features`` registry, with the agent's bar checks.

The definitions live in :mod:`quantnb.features._library` (one formula per feature, used by
both the batch and the incremental engine). This module chooses the agent's feature list
(:data:`MARKET_FEATURES` plus the order-book features the bars carry) and refuses bars a
trading environment must not see (a missing or non-positive close, non-increasing ``ts``).
Gaps of 2 minutes or more restart every indicator: rows are null again for ``warmup_bars``
bars after a gap, and the environment never builds an observation across one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import polars as pl
from loguru import logger

from quantnb.errors import DataError
from quantnb.features import (
    AGENT_FEATURES,
    BOOK_FEATURE_SOURCES,
    DEFAULT_WARMUP_BARS,
    MARKET_FEATURES,
    available_features,
    check_warmup,
    compute_batch,
    get_specs,
)

__all__ = ["MARKET_FEATURES", "BOOK_FEATURE_SOURCES", "DEFAULT_WARMUP_BARS", "available_feature_names",
           "compute_features"]


def available_feature_names(bars: pl.DataFrame) -> list[str]:
    """Return the agent features computable from ``bars``, in canonical order."""
    out = available_features(bars, AGENT_FEATURES)
    left = [f for f in BOOK_FEATURE_SOURCES if f not in out and all(c in bars.columns for c in BOOK_FEATURE_SOURCES[f])]
    if left:
        logger.info("rl/features {} left out: their book columns hold no value", left)
    return out


def compute_features(bars: pl.DataFrame, feature_names: Sequence[str] | None = None, *,
                     warmup_bars: int = DEFAULT_WARMUP_BARS) -> pl.DataFrame:
    """Compute the agent's features for every bar (batch engine of :mod:`quantnb.features`).

    Parameters
    ----------
    bars : polars.DataFrame
        Columns ``ts`` (Datetime, strictly increasing), ``close`` (Float64, USD, > 0) and the
        features' source columns; one row per closed bar.
    feature_names : sequence of str, optional
        Features to return, in order; default :func:`available_feature_names` of the bars.
    warmup_bars : int, default 500
        Warm-up of the recursive indicators, bars (>= 60); every segment (data start, or after
        a gap of 2 minutes or more) is null for its first ``warmup_bars - 1`` rows.

    Returns
    -------
    polars.DataFrame
        ``ts`` then one Float64 column per feature, ``bars.height`` rows.

    Raises
    ------
    DataError
        If a column is missing, a close is not a positive number, or ``ts`` does not increase.
    ConfigError
        If a feature name is unknown or ``warmup_bars`` is shorter than the look-back.
    """
    names = available_feature_names(bars) if feature_names is None else list(feature_names)
    get_specs(names)
    check_warmup(warmup_bars)
    check_close(bars)
    return compute_batch(bars, names, warmup_bars=warmup_bars)


def check_close(bars: pl.DataFrame) -> None:
    """Refuse bars whose ``close`` is missing, null, not finite or not positive."""
    if "close" not in bars.columns:
        raise DataError(f"bars lack column 'close' (columns: {bars.columns}); pass ETL bars "
                        "(ts, open, high, low, close, volume[, book])", field="close")
    close = bars["close"].cast(pl.Float64)
    bad = close.is_null() | ~close.is_finite() | (close <= 0)
    if bad.any():
        i = cast(int, bad.arg_max())
        ts = bars["ts"][i] if "ts" in bars.columns else None
        raise DataError(f"bars row {i} (ts={ts}): close={close[i]!r} is not a positive price; fix the ETL",
                        bar=i, field="close")
