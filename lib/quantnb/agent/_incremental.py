"""Features updated one closed bar at a time, equal to :func:`compute_features` row for row."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from quantnb.errors import DataError
from quantnb.features import DEFAULT_WARMUP_BARS, MARKET_FEATURES, FeatureStream


class IncrementalFeatures(FeatureStream):
    """Compute the agent's features bar by bar, for the live trader.

    The incremental engine of :mod:`quantnb.features` (same formulas as
    :func:`compute_features`, same gap policy) plus the agent's check that every close is a
    positive price.

    Parameters
    ----------
    feature_names : sequence of str, optional
        Features in output order; default :data:`MARKET_FEATURES`. Usually the bundle's list.
    window : int, default 1
        Number of recent feature rows kept for :meth:`window_array`.
    warmup_bars : int, default 500
        Warm-up of the recursive indicators; must equal the value used in training.

    Raises
    ------
    ConfigError
        If a feature name is unknown, ``window < 1`` or ``warmup_bars`` is too short.
    """

    def __init__(self, feature_names: Sequence[str] | None = None, *, window: int = 1,
                 warmup_bars: int = DEFAULT_WARMUP_BARS) -> None:
        super().__init__(list(feature_names or MARKET_FEATURES), window=window, warmup_bars=warmup_bars)

    def update(self, bar: Mapping[str, Any]) -> np.ndarray | None:
        """Add one closed bar and return its feature row (see :meth:`FeatureStream.update`).

        Parameters
        ----------
        bar : mapping
            ``close`` (USD, > 0), the source columns of the features, optionally ``ts``.

        Returns
        -------
        numpy.ndarray, shape (n_features,), float64, or None
            None during warm-up (after the start or a gap).

        Raises
        ------
        DataError
            If a field is missing, the close is not a positive number, or ``ts`` does not
            increase; the state is left unchanged.
        """
        if "close" not in bar:
            raise DataError(f"bar lacks field 'close' (fields: {sorted(bar)}); pass closed OHLCV bars",
                            bar=str(bar.get("ts")), field="close")
        try:
            close = float(bar["close"])
        except (TypeError, ValueError) as e:
            raise DataError(f"bar close={bar['close']!r} is not a number", bar=str(bar.get("ts")), field="close") from e
        if not (math.isfinite(close) and close > 0):
            raise DataError(f"bar close={close!r} (ts={bar.get('ts')}) is not a positive price; skip or fix the bar",
                            bar=str(bar.get("ts")), field="close")
        return super().update(bar)

    def push(self, bar: Mapping[str, Any]) -> None:
        """Add one closed bar (as :meth:`update`, without returning the row): the live trader's call.

        Parameters
        ----------
        bar : mapping
            As :meth:`update`.

        Raises
        ------
        DataError
            As :meth:`update`.
        """
        self.update(bar)
