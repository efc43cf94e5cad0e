"""DataProvider interface and ReplayProvider (bars of :func:`quantnb.data.read_bars` played back as candles)."""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from typing import cast

import polars as pl
from loguru import logger

from quantnb.errors import ConfigError
from quantnb.live._types import Bar

__all__ = ["DataProvider", "ReplayProvider", "OHLCV_COLUMNS"]

OHLCV_COLUMNS = ("ts", "open", "high", "low", "close", "volume")


class DataProvider(abc.ABC):
    """A source of closed candles: a warm-up history, then one event per closed candle."""

    finished: bool = False

    @abc.abstractmethod
    def warmup(self) -> list[Bar]:
        """Return the closed candles before the first traded one (indicator warm-up), oldest first."""

    @abc.abstractmethod
    def next_bar(self, timeout_s: float) -> Bar | None:
        """Return the next closed candle, or None if none closed within ``timeout_s`` seconds."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and threads."""

    def fallback(self) -> None:  # noqa: B027 - optional hook
        """Fetch the closed candles the stream did not deliver by another route (REST), for the stale-feed watchdog."""

    def resume_after(self, open_time_ms: int) -> None:  # noqa: B027 - optional hook
        """Hint that candles opening at or before ``open_time_ms`` were processed before a restart (no pacing)."""


class ReplayProvider(DataProvider):
    """Play processed bars back as closed candles, at a chosen speed.

    Parameters
    ----------
    bars : polars.DataFrame
        Bars sorted by ``ts`` (see :func:`quantnb.data.read_bars`); extra numeric columns are
        passed on in ``extras``; without a ``volume`` column each candle's volume is None.
    history_bars : int
        Leading bars returned by :meth:`warmup` (the history that warms the features up), not
        traded: the index of the first traded bar. Not ``warmup_bars``, the indicators' warm-up
        after a start or gap (``EnvSpec.warmup_bars``), which is one part of it.
    speed : float
        Replay speed factor: 60 plays 1-minute bars one per second; 0 = as fast as possible.
    bar_interval_s : float
        Length of a bar, seconds (for the pacing).
    sleep : callable
        Injectable sleep.

    Raises
    ------
    ConfigError
        If ``speed < 0`` or there are no bars after the warm-up.
    """

    def __init__(self, bars: pl.DataFrame, *, history_bars: int, speed: float = 0.0, bar_interval_s: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep):
        if speed < 0:
            raise ConfigError(f"replay speed={speed}: must be >= 0 (0 = as fast as possible)")
        if bars.height <= history_bars:
            raise ConfigError(f"replay has {bars.height} bars but needs more than history_bars={history_bars}; "
                              f"give a longer span")
        self.history_bars = history_bars
        self.speed = speed
        self._pause_s = bar_interval_s / speed if speed > 0 else 0.0
        self._sleep = sleep
        ts_ms = (bars["ts"].dt.epoch("ms") if bars.schema["ts"] != pl.Int64 else bars["ts"]).to_list()
        # a missing column (only volume may be) gives None, as the docstring says
        cols = cast(list[list[float]], [bars[c].cast(pl.Float64).to_list() if c in bars.columns
                                        else [None] * bars.height for c in OHLCV_COLUMNS[1:]])
        self.extra_columns = tuple(c for c in bars.columns if c not in OHLCV_COLUMNS and bars.schema[c].is_numeric())
        extras = [bars[c].cast(pl.Float64).to_list() for c in self.extra_columns]
        n = bars.height
        self._bars = [
            Bar(ts_ms[i], cols[0][i], cols[1][i], cols[2][i], cols[3][i], cols[4][i], source="replay",
                next_open=cols[0][i + 1] if i + 1 < n else None,
                extras=dict(zip(self.extra_columns, (e[i] for e in extras), strict=True)) if extras else None)
            for i in range(n)
        ]
        self._i = history_bars
        self._last_emit = 0.0
        self._seen_until_ms = -1
        logger.info("live/feed: replay of {} bars ({} of history) at speed {}", n, history_bars, speed or "max")

    @property
    def bars(self) -> list[Bar]:
        """Every bar of the replay, warm-up included."""
        return self._bars

    @property
    def finished(self) -> bool:  # type: ignore[override]
        """True once every bar has been emitted."""
        return self._i >= len(self._bars)

    def resume_after(self, open_time_ms: int) -> None:
        """Play candles up to ``open_time_ms`` (processed before a restart) without pacing.

        Parameters
        ----------
        open_time_ms : int
            Open time of the last processed candle, milliseconds since the Unix epoch (UTC).
        """
        self._seen_until_ms = open_time_ms

    def warmup(self) -> list[Bar]:
        """Return the first ``history_bars`` bars."""
        return self._bars[: self.history_bars]

    def next_bar(self, timeout_s: float) -> Bar | None:
        """Return the next bar, pacing by ``speed``; None at the end or while pacing beyond ``timeout_s``.

        Parameters
        ----------
        timeout_s : float
            Longest pause, in seconds, this call may wait for the next bar's turn.
        """
        if self.finished:
            return None
        if self._pause_s and self._bars[self._i].open_time_ms > self._seen_until_ms:
            wait_s = self._last_emit + self._pause_s - time.monotonic()
            if wait_s > timeout_s:
                self._sleep(timeout_s)
                return None
            if wait_s > 0:
                self._sleep(wait_s)
            self._last_emit = time.monotonic()
        bar = self._bars[self._i]
        self._i += 1
        return bar
