"""Feature specs: one formula per feature, evaluated as a polars expression or bar by bar.

A :class:`FeatureSpec` holds a *formula*: a function of a source accessor and an operations
table. The batch engine (:func:`quantnb.features.compute_batch`) calls it with polars column
expressions and polars operations; the incremental engine (:class:`quantnb.features.FeatureStream`)
calls it with the current bar's values, a short history and numpy scalar operations. The same
function, hence the same arithmetic in the same order, produces both results, so batch and live
agree by construction (a test checks it to 1e-9 on the bundled month, across injected gaps).

Gap policy (one, everywhere): a bar whose timestamp is :data:`GAP_THRESHOLD` (2 minutes) or
more after the previous bar's, or that carries ``gap_before = True``, starts a new *segment*.
Every lag, window and recursion restarts at a segment start, so no value spans a gap; a
feature is null on the first ``warmup_bars - 1`` bars of every segment.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from quantnb.data import GAP_MIN
from quantnb.errors import ConfigError

GAP_THRESHOLD = dt.timedelta(minutes=GAP_MIN)
"""A step between bar timestamps of this much or more is a gap (the ETL's ``gap_before`` rule,
:data:`quantnb.data._bars.GAP_MIN` = 2 minutes): every feature restarts after it."""

#: Source columns that carry an order-book snapshot: a null there means "unchanged", so it is
#: forward-filled, but only inside a segment (never across a gap).
FORWARD_FILLED: frozenset[str] = frozenset(
    {"spread_bps_mean", "imbalance_10", "micro_price_close", "mid_close", "bid_depth_10", "ask_depth_10"}
)

Formula = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: its sources (bar columns), formula, warm-up and behaviour at a gap (restart, the only policy).

    ``formula(x, o)``: ``x[col]`` is the current bar's value, ``x.lag(col, k)`` the value ``k`` bars
    earlier, ``x.window(col, n)`` the last ``n`` values oldest first, ``x.ema(value, alpha)`` an
    exponential mean (``adjust=False``, seeded with the first non-null value of the segment); ``o``
    provides ``log``, ``log1p``, ``sqrt``, ``maximum``, ``minimum``, ``where``, ``total`` and ``cast``.
    ``warmup_bars``: bars of a segment needed before the value is defined (1 = the current bar only);
    ``recursive`` marks exponential recursions, whose warm-up is a convergence length (the caller's
    ``warmup_bars``, default 500, so the seed's weight is below 1e-16). ``lookback``: the longest lag
    or window, bars (the stream keeps this much history).
    """

    name: str
    sources: tuple[str, ...]
    formula: Formula
    warmup_bars: int = 1
    recursive: bool = False
    at_gap: Literal["restart"] = "restart"
    doc: str = ""
    lookback: int = 0

    def batch_expr(self) -> pl.Expr:
        """Return the polars expression of the feature for one segment (apply it ``.over`` segments)."""
        return self.formula(_PlSource(), PL_OPS).cast(pl.Float64).alias(self.name)


class _PlSource:
    """Source accessor for the batch engine: polars column expressions."""

    def __init__(self) -> None:
        self._n_ema = 0

    def __getitem__(self, col: str) -> pl.Expr:
        return pl.col(col).cast(pl.Float64)

    def lag(self, col: str, k: int) -> pl.Expr:
        return pl.col(col).cast(pl.Float64).shift(k)

    def window(self, col: str, n: int) -> list[pl.Expr]:
        return [self.lag(col, k) for k in range(n - 1, 0, -1)] + [self[col]]

    def ema(self, value: pl.Expr, alpha: float) -> pl.Expr:
        return value.ewm_mean(alpha=alpha, adjust=False, ignore_nulls=True)


class _PlOps:
    """Operations on polars expressions (the batch side of every formula)."""

    log = staticmethod(lambda e: e.log())
    log1p = staticmethod(lambda e: e.log1p())
    sqrt = staticmethod(lambda e: e.sqrt())
    maximum = staticmethod(lambda a, b: pl.max_horizontal(a, b))
    minimum = staticmethod(lambda a, b: pl.min_horizontal(a, b))

    @staticmethod
    def where(cond: Any, a: Any, b: Any) -> pl.Expr:
        return pl.when(cond).then(a).otherwise(b)

    @staticmethod
    def total(values: Sequence[Any]) -> Any:
        out = values[0]
        for v in values[1:]:
            out = out + v
        return out


class _NpOps:
    """Operations on numpy float64 scalars (the incremental side of every formula)."""

    log = staticmethod(np.log)
    log1p = staticmethod(np.log1p)
    sqrt = staticmethod(np.sqrt)

    @staticmethod
    def maximum(a: Any, b: Any) -> Any:  # ignores a missing side, as polars' max_horizontal does
        return b if math.isnan(a) else a if math.isnan(b) else max(a, b)

    @staticmethod
    def minimum(a: Any, b: Any) -> Any:
        return b if math.isnan(a) else a if math.isnan(b) else min(a, b)

    @staticmethod
    def where(cond: Any, a: Any, b: Any) -> Any:
        return np.float64(a if cond else b)

    total = staticmethod(_PlOps.total)


PL_OPS, NP_OPS = _PlOps(), _NpOps()


class NpSource:
    """Source accessor for the incremental engine: one segment's history of source values."""

    def __init__(self, history: Mapping[str, Sequence[Any]], ema_state: list[Any]) -> None:
        self._h = history
        self._ema = ema_state
        self._i = 0

    def __getitem__(self, col: str) -> Any:
        return self._h[col][-1]

    def lag(self, col: str, k: int) -> Any:
        """Return ``col`` ``k`` bars before the current one."""
        h = self._h[col]
        return h[-1 - k] if len(h) > k else np.float64(np.nan)

    def window(self, col: str, n: int) -> list[Any]:
        """Return the last ``n`` values of ``col``, oldest first."""
        h = self._h[col]
        return list(h)[-n:] if len(h) >= n else [np.float64(np.nan)] * n

    def ema(self, value: Any, alpha: float) -> Any:
        """Advance this call's exponential mean by ``value`` and return it (``adjust=False``)."""
        i, self._i = self._i, self._i + 1
        if i == len(self._ema):
            self._ema.append(np.float64(np.nan))
        prev = self._ema[i]
        if math.isnan(value):
            return prev
        # written as polars writes adjust=False: (1 - alpha) * prev + alpha * value
        self._ema[i] = value if math.isnan(prev) else (1.0 - alpha) * prev + alpha * value
        return self._ema[i]


REGISTRY: dict[str, FeatureSpec] = {}


def register(spec: FeatureSpec) -> FeatureSpec:
    """Add ``spec`` to :data:`REGISTRY`."""
    if spec.name in REGISTRY:
        raise ConfigError(f"feature {spec.name!r} is already registered; pick another name")
    REGISTRY[spec.name] = spec
    return spec


def get_specs(names: Sequence[str]) -> list[FeatureSpec]:
    """Return the specs of ``names``, in order.

    Parameters
    ----------
    names : sequence of str
        Registered feature names.

    Raises
    ------
    ConfigError
        If a name is not registered (the message lists the known ones and the renamed ones).
    """
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        hint = ""
        if "spread_bps_mean" in unknown:
            hint = " ('spread_bps_mean' is now the feature 'spread_bps'; its source column keeps the old name)"
        raise ConfigError(f"unknown features {unknown}{hint}; known: {sorted(REGISTRY)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"features {list(names)} repeat a name; list each feature once")
    return [REGISTRY[n] for n in names]
