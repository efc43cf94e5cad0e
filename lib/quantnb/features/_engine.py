"""The two engines generated from the registry: batch (polars) and incremental (one bar at a time)."""

from __future__ import annotations

import datetime as dt
import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import polars as pl

from quantnb.errors import ConfigError, DataError
from quantnb.features._library import DEFAULT_WARMUP_BARS, MIN_RECURSIVE_WARMUP
from quantnb.features._spec import FORWARD_FILLED, GAP_THRESHOLD, NP_OPS, FeatureSpec, NpSource, get_specs

_GAP_US = int(GAP_THRESHOLD.total_seconds() * 1_000_000)
_GAP_S = GAP_THRESHOLD.total_seconds()


def _seconds(ts: Any) -> float:
    """Return ``ts`` in seconds since the epoch: a datetime, a numpy datetime64, or int milliseconds."""
    if isinstance(ts, dt.datetime):
        return ts.timestamp()
    if isinstance(ts, np.datetime64):
        return float(ts.astype("datetime64[us]").astype(np.int64)) / 1e6
    if isinstance(ts, (int, float, np.integer, np.floating)):
        return float(ts) / 1000.0  # the live feed's open_time_ms
    raise DataError(f"bar ts={ts!r} ({type(ts).__name__}): expected a datetime or int milliseconds since the epoch",
                    bar=repr(ts), field="ts")


def segment_start_expr(columns: Sequence[str]) -> pl.Expr:
    """Return an expression, True where a bar starts a segment (first row, a gap, or ``gap_before``).

    Parameters
    ----------
    columns : sequence of str
        The frame's columns (``gap_before`` is honoured when present).

    Returns
    -------
    polars.Expr
        Boolean, named ``_segment_start``; a gap is a ``ts`` step of 2 minutes or more.
    """
    step = pl.col("ts").dt.epoch("us").diff()
    start = step.is_null() | (step >= _GAP_US)
    if "gap_before" in columns:
        start = start | pl.col("gap_before").fill_null(False)
    return start.alias("_segment_start")


def check_warmup(warmup_bars: int) -> int:
    """Return ``warmup_bars`` as an int after checking it covers the longest look-back.

    Parameters
    ----------
    warmup_bars : int
        Warm-up of the recursive features, bars.

    Raises
    ------
    ConfigError
        If ``warmup_bars`` is below :data:`MIN_RECURSIVE_WARMUP` (60).
    """
    if int(warmup_bars) < MIN_RECURSIVE_WARMUP:
        raise ConfigError(
            f"warmup_bars={warmup_bars!r}: must be >= {MIN_RECURSIVE_WARMUP}, the longest indicator look-back")
    return int(warmup_bars)


def spec_warmup(spec: FeatureSpec, warmup_bars: int) -> int:
    """Return the bars of a segment ``spec`` needs: its own warm-up, or ``warmup_bars`` if recursive."""
    return max(spec.warmup_bars, warmup_bars) if spec.recursive else spec.warmup_bars


def compute_batch(bars: pl.DataFrame, names: Sequence[str], *, warmup_bars: int = DEFAULT_WARMUP_BARS,
                  keep: Sequence[str] = ("ts",)) -> pl.DataFrame:
    """Compute the features ``names`` for every bar (the batch engine).

    Parameters
    ----------
    bars : polars.DataFrame
        Bars with ``ts`` (Datetime, strictly increasing) and the features' source columns;
        ``gap_before`` (bool) is honoured when present.
    names : sequence of str
        Registered feature names, in output order.
    warmup_bars : int, default 500
        Warm-up of the recursive features (RSI, MACD), bars; >= 60.
    keep : sequence of str, default ("ts",)
        Columns of ``bars`` to keep in front of the features (all columns: ``bars.columns``).

    Returns
    -------
    polars.DataFrame
        ``keep`` columns, then one Float64 column per feature, ``bars.height`` rows; null during
        each segment's warm-up and where a value is not finite.

    Raises
    ------
    ConfigError
        If a feature is unknown or ``warmup_bars`` is too short.
    DataError
        If a source column is missing or ``ts`` does not increase strictly.
    """
    specs = get_specs(list(names))
    warm = check_warmup(warmup_bars)
    _check_frame(bars, specs)
    if bars.height == 0:
        return bars.select(keep).with_columns([pl.lit(None, pl.Float64).alias(s.name) for s in specs])
    ffill = [c for c in dict.fromkeys(c for s in specs for c in s.sources) if c in FORWARD_FILLED]
    lazy = (bars.lazy().with_columns(segment_start_expr(bars.columns))
            .with_columns(pl.col("_segment_start").cum_sum().alias("_segment"))
            .with_columns(pl.int_range(pl.len()).over("_segment").alias("_pos"),
                          *[pl.col(c).forward_fill().over("_segment") for c in ffill]))
    exprs = []
    for s in specs:
        value = s.batch_expr().over("_segment")
        value = pl.when(pl.col("_pos") >= spec_warmup(s, warm) - 1).then(value)
        exprs.append(pl.when(value.is_finite()).then(value).otherwise(None).alias(s.name))
    out = lazy.with_columns(exprs).select([*keep, *(s.name for s in specs)]).collect()
    return out


def _check_frame(bars: pl.DataFrame, specs: Sequence[FeatureSpec]) -> None:
    need = ["ts", *dict.fromkeys(c for s in specs for c in s.sources)]
    missing = [c for c in need if c not in bars.columns]
    if missing:
        raise DataError(f"bars lack columns {missing} that the features need; pass ETL bars "
                        "(ts, open, high, low, close, volume[, book columns])", field=missing[0])
    if bars.height > 1:
        steps = bars["ts"].dt.epoch("us").diff().slice(1)
        bad = steps.is_null() | (steps <= 0)
        if bad.any():
            i = cast(int, bad.arg_max()) + 1
            raise DataError(f"bars row {i} (ts={bars['ts'][i]}): timestamps must increase strictly; "
                            "sort the bars by ts and drop duplicate minutes", bar=i, field="ts")


class RowWindow:
    """The last ``window`` complete feature rows of one segment, and feeding a whole frame.

    Base of the live feature streams; subclasses set ``window`` and ``_rows`` (a deque of
    ``maxlen=window``) and define ``update``.
    """

    window: int
    _rows: deque[np.ndarray]

    def update(self, bar: Mapping[str, Any]) -> np.ndarray | None:  # pragma: no cover - abstract
        """Add one closed bar; return its feature row, or None while warming up (subclasses implement it).

        Parameters
        ----------
        bar : mapping
            The bar's fields.
        """
        raise NotImplementedError

    @property
    def ready(self) -> bool:
        """Return True once :meth:`window_array` has ``window`` rows."""
        return len(self._rows) == self.window

    def update_frame(self, bars: pl.DataFrame) -> int:
        """Feed every row of ``bars`` in order (history before going live); return how many gave a feature row.

        Parameters
        ----------
        bars : polars.DataFrame
            Closed bars with the source columns (and ``ts``); errors as :meth:`update`.
        """
        return sum(self.update(row) is not None for row in bars.iter_rows(named=True))

    def window_array(self) -> np.ndarray | None:
        """Return the last ``window`` feature rows, oldest first, or None until there are that many.

        Returns
        -------
        numpy.ndarray, shape (window, n_features), float64, or None
            Rows of one segment only (a gap empties the window).
        """
        return np.stack(self._rows) if self.ready else None


class FeatureStream(RowWindow):
    """Compute features one closed bar at a time (the incremental engine), equal to :func:`compute_batch`.

    After the same bars, :meth:`update` returns the corresponding row of :func:`compute_batch`
    (to 1e-9; the same formulas run on numpy scalars), and :meth:`window_array` the last
    ``window`` rows. A gap (``ts`` step of 2 minutes or more, or ``gap_before``) restarts every
    feature and empties the window, as the batch engine does.

    Parameters
    ----------
    feature_names : sequence of str
        Registered feature names, in output order.
    window : int, default 1
        Feature rows kept for :meth:`window_array`.
    warmup_bars : int, default 500
        Warm-up of the recursive features; must equal the batch value used in training.

    Raises
    ------
    ConfigError
        If a feature is unknown, ``window < 1`` or ``warmup_bars`` too short.
    """

    def __init__(self, feature_names: Sequence[str], *, window: int = 1,
                 warmup_bars: int = DEFAULT_WARMUP_BARS) -> None:
        self._specs = get_specs(list(feature_names))
        self.feature_names: tuple[str, ...] = tuple(s.name for s in self._specs)
        if int(window) < 1:
            raise ConfigError(f"window={window!r}: must be >= 1")
        self.window = int(window)
        self.warmup_bars = check_warmup(warmup_bars)
        self._warm = [spec_warmup(s, self.warmup_bars) for s in self._specs]
        self._sources = tuple(dict.fromkeys(c for s in self._specs for c in s.sources))
        self._depth = max([s.lookback for s in self._specs] + [0]) + 1
        self._rows: deque[np.ndarray] = deque(maxlen=self.window)
        self._last_ts: Any = None
        self.n_seen = 0
        self._restart()

    def _restart(self) -> None:
        self._hist: dict[str, deque[Any]] = {c: deque(maxlen=self._depth) for c in self._sources}
        self._ema: list[list[Any]] = [[] for _ in self._specs]
        self._last_book: dict[str, Any] = {}
        self.n_segment = 0
        self._rows.clear()

    def update(self, bar: Mapping[str, Any]) -> np.ndarray | None:
        """Add one closed bar; return its feature row.

        Parameters
        ----------
        bar : mapping
            The source columns of the features (order-book values: None or NaN means
            "unchanged", like the batch forward fill), optionally ``ts`` (datetime, or int
            milliseconds since the epoch as the live feed's ``open_time_ms``; checked to increase;
            a step of 2 minutes or more restarts every feature) and ``gap_before``.

        Returns
        -------
        numpy.ndarray, shape (n_features,), float64, or None
            None while a feature is warming up or not finite (the window is then emptied).

        Raises
        ------
        DataError
            If a field is missing, a value is not a number, or ``ts`` does not increase; the
            state is then left unchanged.
        """
        vals = {c: self._read(bar, c) for c in self._sources}
        ts = bar.get("ts")
        gap = bool(bar.get("gap_before") or False)
        if ts is not None and self._last_ts is not None:
            if not ts > self._last_ts:
                raise DataError(f"bar ts={ts} does not follow the previous bar ts={self._last_ts}; drop duplicates",
                                bar=str(ts), field="ts")
            gap = gap or _seconds(ts) - _seconds(self._last_ts) >= _GAP_S
        if gap:
            self._restart()
        self._last_ts = ts if ts is not None else self._last_ts
        for c, v in vals.items():
            if c in FORWARD_FILLED:
                v = self._last_book.get(c, v) if math.isnan(v) else v
                self._last_book[c] = v
            self._hist[c].append(v)
        self.n_segment += 1
        self.n_seen += 1
        row = np.empty(len(self._specs), dtype=np.float64)
        with np.errstate(all="ignore"):
            for i, s in enumerate(self._specs):
                v = np.float64(s.formula(NpSource(self._hist, self._ema[i]), NP_OPS))
                row[i] = v if self.n_segment >= self._warm[i] else np.nan
        if not np.isfinite(row).all():
            self._rows.clear()
            return None
        self._rows.append(row)
        return row.copy()

    @staticmethod
    def _read(bar: Mapping[str, Any], col: str) -> np.float64:
        if col not in bar:
            raise DataError(f"bar lacks field {col!r} (fields: {sorted(bar)}) that the features need; "
                            "add it to the feed or use a bundle trained without it", bar=str(bar.get("ts")), field=col)
        v = bar[col]
        if v is None:
            return np.float64(np.nan)
        try:
            return np.float64(v)
        except (TypeError, ValueError) as e:
            raise DataError(f"bar field {col}={v!r} (ts={bar.get('ts')}) is not a number; fix the feed",
                            bar=str(bar.get("ts")), field=col) from e
