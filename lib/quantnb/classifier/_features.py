"""The classifier's features: the ``quantnb.features`` registry's :data:`RESEARCH_FEATURES`.

Definitions (one formula per feature, shared with the agent and the live trader) and the
gap policy are in :mod:`quantnb.features`; this module picks the classifier's feature list
and keeps the frame's other columns (labels, ``gap_before``) next to the features.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from quantnb.data import check_bars, data_columns
from quantnb.errors import ConfigError
from quantnb.features import RESEARCH_FEATURES, available_features, compute_batch

_PRICES = ("open", "high", "low", "close")


def _holding_data(bars: pl.DataFrame | Sequence[str]) -> list[str]:
    if not isinstance(bars, pl.DataFrame):
        return list(bars)
    return data_columns(bars)


def feature_columns(bars: pl.DataFrame | Sequence[str]) -> list[str]:
    """Return the names of the classifier features that these bars provide.

    A feature is provided when its source columns hold data (:func:`quantnb.data.data_columns`:
    the ETL writes every bar column, null where the source lacks it, e.g. book columns for an
    OHLCV file or volume for a book-only file). The table of
    definitions is in :mod:`quantnb.features._library`.

    Parameters
    ----------
    bars : polars.DataFrame or sequence of str
        The bars, or just their column names (then every listed column counts as holding data).
        ``open, high, low, close`` are required.

    Returns
    -------
    list of str
        Feature names, in the fixed order of :data:`quantnb.features.RESEARCH_FEATURES`.

    Raises
    ------
    ConfigError
        If a price column (open, high, low, close) is missing or entirely null.
    """
    columns = _holding_data(bars)
    missing = [c for c in _PRICES if c not in columns]
    if missing:
        raise ConfigError(f"bars: columns {missing} are missing or empty (have {columns}); features need OHLC bars")
    return available_features(columns, RESEARCH_FEATURES)


def build_features(df: pl.DataFrame, features: list[str] | None = None) -> pl.DataFrame:
    """Add the classifier feature columns (Float64) to 1-minute bars.

    Features that need the previous minute (returns, volume change) are null on the first bar
    of the data and on the first bar after a gap (a step of 2 minutes or more, or
    ``gap_before``), so no feature ever bridges a gap; non-finite values (a zero price, an
    empty book side) become null and mark the row unusable for :class:`WindowDataset`.

    Parameters
    ----------
    df : polars.DataFrame
        Bars with ``ts`` and OHLCV columns, optionally book columns (see :func:`feature_columns`).
    features : list of str, optional
        Features to build (e.g. from a saved model bundle); default ``feature_columns(df)``.

    Returns
    -------
    polars.DataFrame
        ``df`` with one Float64 column per feature added (existing columns of the same name replaced).

    Raises
    ------
    ConfigError
        If a price column is missing or a requested feature cannot be built from these columns.
    DataError
        If ``ts`` is missing, not a Datetime, off the minute grid, unsorted or duplicated.
    """
    available = feature_columns(df)
    check_bars(df)
    wanted = available if features is None else list(features)
    unknown = [f for f in wanted if f not in available]
    if unknown:
        raise ConfigError(
            f"features: {unknown} cannot be built from these bars (columns holding data: {_holding_data(df)}); "
            "the model was trained on bars with more columns (e.g. book features) — use matching bars"
        )
    return compute_batch(df, wanted, keep=[c for c in df.columns if c not in wanted])
