"""Feed and stop watchdogs of the trader: a silent feed, and a stop that must be on record before the kill."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from loguru import logger

__all__ = ["FeedWatchdog", "StopGuard", "missing_features"]


def missing_features(extras: Mapping[str, Any] | None, needed: Sequence[str]) -> list[str]:
    """Return the needed source columns a candle lacks (absent, None or NaN in ``extras``)."""
    out = []
    for col in needed:
        v = None if extras is None else extras.get(col)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(col)
    return out


class FeedWatchdog:
    """Count the bars a feed has missed: no closed candle, or none carrying every needed feature.

    A stream can stay open and send nothing: the trader would wait for ever holding its position.
    The first ``bar_s`` after a candle is the normal wait; each further ``bar_s`` is one missed bar.
    """

    def __init__(self, bar_s: float, warn_bars: int, emergency_bars: int, clock: Callable[[], float] = time.monotonic):
        self.bar_s, self.clock = float(bar_s), clock
        self.warn_bars, self.emergency_bars = warn_bars, emergency_bars
        self.last_s = clock()
        self.fallback_at = 0  # missed-bar count at the last REST fallback

    def fed(self) -> None:
        """Record a complete candle: nothing is missing."""
        self.last_s = self.clock()
        self.fallback_at = 0

    def missed_bars(self) -> int:
        """Return the whole bars missed since the last complete candle (0 while the next is due)."""
        return max(0, int((self.clock() - self.last_s) / self.bar_s) - 1)

    def verdict(self) -> str:
        """Return ``""`` (wait), ``"fallback"`` (logged at WARNING: ask REST) or the emergency's detail."""
        missed = self.missed_bars()
        if missed >= self.emergency_bars:
            return (f"the feed gave no complete candle for {missed} bar(s) (stale_emergency_bars="
                    f"{self.emergency_bars}); the REST fallback gave none either")
        if missed >= self.warn_bars and missed > self.fallback_at:
            self.fallback_at = missed
            logger.warning("live/feed: stale feed: no complete candle for {} bar(s) (stale_warn_bars={}); asking REST "
                           "for the missed candles; the emergency runs at {}", missed, self.warn_bars,
                           self.emergency_bars)
            return "fallback"
        return ""


class StopGuard:
    """Put a stop on record before the runner's kill: the state at once, the unconfirmed flatten at the deadline.

    Started from a signal handler, the work runs in this daemon thread, not in the handler.
    """

    def __init__(self, timeout_s: float, mark: Callable[[], None], record: Callable[[], None]):
        self.timeout_s = timeout_s
        self._mark, self._record = mark, record
        self._done = threading.Event()
        self.recorded = False
        self._thread = threading.Thread(target=self._run, name="stop-guard", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._mark()
            if not self._done.wait(self.timeout_s):
                self._record()
                self.recorded = True
        except Exception as exc:  # noqa: BLE001 - a guard that fails must not kill the stop in progress
            logger.opt(exception=exc).error("live/stop: the stop guard failed: {}: {}", type(exc).__name__, exc)

    def done(self) -> None:
        """Mark the stop finished in time: ``record`` will not run."""
        self._done.set()
        self._thread.join(5)
