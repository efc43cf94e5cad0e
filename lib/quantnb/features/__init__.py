"""One feature layer from bars to agent to live.

A registry of :class:`~quantnb.features._spec.FeatureSpec` (name, source columns, one formula, warm-up in bars,
behaviour at a gap) generates both engines, so research, the RL environment and the live
trader compute the same numbers:

- :func:`compute_batch` evaluates the formulas as polars expressions over whole frames
  (research datasets, the training environment);
- :class:`FeatureStream` evaluates the same formulas on numpy scalars one closed bar at a
  time (the live trader), equal to the batch rows to 1e-9.

One gap policy: a step of :data:`~quantnb.features._spec.GAP_THRESHOLD` (2 minutes) or more between bar timestamps,
or ``gap_before = True``, starts a new segment; every lag, window and recursion restarts there,
so no value spans a gap. :class:`FeatureScaler` standardises features (optionally clipped) and
reads every scaler file the project has written. The feature table is in
:mod:`quantnb.features._library`.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from quantnb.data import data_columns
from quantnb.features._engine import (
    FeatureStream,
    RowWindow,
    check_warmup,
    compute_batch,
    segment_start_expr,
)
from quantnb.features._library import (
    AGENT_FEATURES,
    BOOK_FEATURE_SOURCES,
    DEFAULT_WARMUP_BARS,
    MARKET_FEATURES,
    RESEARCH_FEATURES,
)
from quantnb.features._scaler import FeatureScaler
from quantnb.features._spec import FORWARD_FILLED, get_specs


def available_features(bars: pl.DataFrame | Sequence[str], candidates: Sequence[str]) -> list[str]:
    """Return the features of ``candidates`` whose source columns hold data, in the given order.

    Parameters
    ----------
    bars : polars.DataFrame or sequence of str
        The bars, or just column names (then every listed column counts as holding data). In a
        frame a column without data (:func:`quantnb.data.data_columns`) counts as absent.
    candidates : sequence of str
        Registered feature names, e.g. :data:`RESEARCH_FEATURES` or :data:`AGENT_FEATURES`.

    Raises
    ------
    ConfigError
        If a candidate is not registered.
    """
    specs = get_specs(list(candidates))
    if isinstance(bars, pl.DataFrame):
        have = set(data_columns(bars))
    else:
        have = set(bars)
    return [s.name for s in specs if set(s.sources) <= have]


__all__ = [
    "get_specs",
    "compute_batch",
    "FeatureStream",
    "RowWindow",
    "FeatureScaler",
    "available_features",
    "segment_start_expr",
    "check_warmup",
    "FORWARD_FILLED",
    "RESEARCH_FEATURES",
    "MARKET_FEATURES",
    "AGENT_FEATURES",
    "BOOK_FEATURE_SOURCES",
    "DEFAULT_WARMUP_BARS",
]
