"""Features updated one closed bar at a time, equal to :func:`compute_features` row for row."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from quantnb.errors import ConfigError, DataError
from quantnb.rl._features import (
    _LOOKBACK,
    BB_K,
    BB_WINDOW,
    BOOK_FEATURE_SOURCES,
    DEFAULT_WARMUP_BARS,
    MARKET_FEATURES,
    RETURN_LAGS,
    RSI_PERIOD,
    SMA_WINDOWS,
    _book_formula,
    _check_names,
    _check_warmup,
    _Recursions,
)


class IncrementalFeatures:
    """Compute the agent's features bar by bar, for the live trader.

    After the same sequence of bars, :meth:`update` returns the same values as the
    corresponding row of :func:`compute_features` (checked to 1e-9 on the bundled month), and
    :meth:`window_array` the last ``window`` rows, ready for :meth:`ObservationBuilder.build`.

    Parameters
    ----------
    feature_names : sequence of str, optional
        Features in output order; default :data:`MARKET_FEATURES`. Usually the bundle's list.
    window : int, default 1
        Number of recent feature rows kept for :meth:`window_array`.
    warmup_bars : int, default 500
        Bars to see before the first row is emitted; must equal the value used in training.

    Raises
    ------
    ConfigError
        If a feature name is unknown, ``window < 1`` or ``warmup_bars`` is too short.
    """

    def __init__(
        self,
        feature_names: Sequence[str] | None = None,
        *,
        window: int = 1,
        warmup_bars: int = DEFAULT_WARMUP_BARS,
    ) -> None:
        self.feature_names: tuple[str, ...] = tuple(_check_names(feature_names or list(MARKET_FEATURES), None))
        if int(window) < 1:
            raise ConfigError(f"window={window!r}: must be >= 1")
        self.window = int(window)
        self.warmup_bars = _check_warmup(warmup_bars)
        self._book_cols = tuple(dict.fromkeys(c for f in self.feature_names for c in BOOK_FEATURE_SOURCES.get(f, ())))
        self._closes: deque[float] = deque(maxlen=_LOOKBACK + 1)
        self._rec = _Recursions()
        self._book: dict[str, float] = dict.fromkeys(self._book_cols, math.nan)
        self._rows: deque[np.ndarray] = deque(maxlen=self.window)
        self._last_ts: Any = None
        self.n_seen = 0

    @property
    def ready(self) -> bool:
        """Return True once :meth:`window_array` has ``window`` rows."""
        return len(self._rows) == self.window

    def update(self, bar: Mapping[str, Any]) -> np.ndarray | None:
        """Add one closed bar and return its feature row.

        Parameters
        ----------
        bar : mapping
            ``close`` (USD, > 0), the order-book source columns of the requested features
            (None or NaN means "unchanged", like the batch forward fill) and optionally ``ts``
            (checked to increase strictly; any comparable type).

        Returns
        -------
        np.ndarray, shape (n_features,), float64, or None
            None during warm-up or while an order-book value has never been seen.

        Raises
        ------
        DataError
            If a field is missing, the close is not a positive number, or ``ts`` does not
            increase (a duplicated or out-of-order candle); the state is left unchanged.
        """
        close = self._read_close(bar)
        ts = bar.get("ts")
        if ts is not None and self._last_ts is not None and not ts > self._last_ts:
            raise DataError(f"bar ts={ts} does not follow the previous bar ts={self._last_ts}; drop duplicates")
        book = {c: self._read_book(bar, c) for c in self._book_cols}
        self._last_ts = ts if ts is not None else self._last_ts
        for c, v in book.items():
            if v is not None and not math.isnan(v):
                self._book[c] = v
        self._closes.append(close)
        macd, signal, rsi = self._rec.update(close)
        self.n_seen += 1
        if self.n_seen < self.warmup_bars:
            return None
        row = self._row(close, macd, signal, rsi)
        if not np.isfinite(row).all():
            self._rows.clear()
            return None
        self._rows.append(row)
        return row.copy()

    def update_frame(self, bars: pl.DataFrame) -> int:
        """Feed every row of ``bars`` (history before going live); return how many rows were ready."""
        return sum(self.update(row) is not None for row in bars.iter_rows(named=True))

    def window_array(self) -> np.ndarray | None:
        """Return the last ``window`` feature rows, shape (window, n_features), float64, oldest first.

        Returns None until ``window`` consecutive complete rows exist.
        """
        return np.stack(self._rows) if self.ready else None

    def _row(self, close: float, macd: float, signal: float, rsi: float) -> np.ndarray:
        arr = np.array(self._closes, dtype=np.float64)
        vals: dict[str, Any] = {}
        for k in RETURN_LAGS:
            vals[f"ret_{k}"] = np.log(close / arr[-1 - k])
        for w in SMA_WINDOWS:  # sum / n, exactly as ndarray.mean in the batch version
            vals[f"sma_ratio_{w}"] = close / (np.add.reduce(arr[-w:]) / w) - 1.0
        win = arr[-BB_WINDOW:]
        mean = np.add.reduce(win) / BB_WINDOW
        sd = math.sqrt(np.add.reduce((win - mean) ** 2) / BB_WINDOW)
        vals[f"bb_pct_b_{BB_WINDOW}"] = (close - (mean - BB_K * sd)) / (2.0 * BB_K * sd) if sd > 0 else 0.5
        vals["macd_line"] = macd / close
        vals["macd_signal"] = signal / close
        vals["macd_hist"] = vals["macd_line"] - vals["macd_signal"]
        vals[f"rsi_{RSI_PERIOD}"] = rsi
        if self._book_cols:
            book = {c: np.float64(v) for c, v in self._book.items()}
            with np.errstate(divide="ignore", invalid="ignore"):
                for f in self.feature_names:
                    if f in BOOK_FEATURE_SOURCES:
                        vals[f] = _book_formula(f, book)
        return np.array([vals[f] for f in self.feature_names], dtype=np.float64)

    @staticmethod
    def _read_close(bar: Mapping[str, Any]) -> float:
        if "close" not in bar:
            raise DataError(f"bar lacks field 'close' (fields: {sorted(bar)}); pass closed OHLCV bars")
        try:
            close = float(bar["close"])
        except (TypeError, ValueError) as e:
            raise DataError(f"bar close={bar['close']!r} is not a number") from e
        if not (math.isfinite(close) and close > 0):
            raise DataError(f"bar close={close!r} (ts={bar.get('ts')}) is not a positive price; skip or fix the bar")
        return close

    @staticmethod
    def _read_book(bar: Mapping[str, Any], col: str) -> float | None:
        if col not in bar:
            raise DataError(f"bar lacks order-book field {col!r} that the agent's features need; add it to the feed")
        v = bar[col]
        return None if v is None else float(v)
