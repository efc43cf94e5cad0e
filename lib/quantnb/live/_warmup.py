"""The trader's features: candles pushed under the gap policy, and the warm-up over the history candles."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from loguru import logger

from quantnb.live._types import Bar


class FeatureFeed:
    """The agent's incremental features under the gap policy: a gap restarts them (a fresh warm-up)."""

    def __init__(self, agent: Any, interval_ms: int):
        self.agent, self.interval_ms = agent, interval_ms
        self.feats = agent.new_feature_stream()
        self.last_ms: int | None = None

    def push(self, bar: Bar) -> bool:
        """Add a validated candle; return True when candles are missing before it (features restarted)."""
        gap = self.last_ms is not None and bar.open_time_ms - self.last_ms > self.interval_ms
        if gap:
            self.feats = self.agent.new_feature_stream()
        self.feats.push(_bar_fields(bar))  # a classifier's forward pass waits for window(): one batch after a warm-up
        self.last_ms = bar.open_time_ms
        return gap

    def window(self) -> np.ndarray | None:
        """Return the observation's feature window (a classifier's pending probabilities computed here), or None."""
        return self.feats.window_array()


def warm_up(feed: FeatureFeed, bars: Sequence[Bar], feed_only: Callable[[FeatureFeed, Bar], None],
            on_warmup: Callable[[int, int], None] | None) -> None:
    """Feed the history candles through ``feed_only``, reporting ``on_warmup(done, total)`` about twice a second."""
    total, t0 = len(bars), time.perf_counter()
    logger.info("live/warmup: {} candles of history warm the features up", total)
    last = t0
    for i, bar in enumerate(bars, 1):
        feed_only(feed, bar)
        if on_warmup is not None and (i & 255 == 0 or i == total) and (i == total or time.perf_counter() - last >= 0.5):
            on_warmup(i, total)
            last = time.perf_counter()
    ready = feed.window() is not None  # a classifier computes the window's probabilities here, in one batch
    logger.info("live/warmup: {} candles in {:.2f} s; features {}", total, time.perf_counter() - t0,
                "ready" if ready else "still warming up (the first decisions wait)")


def _bar_fields(bar: Bar) -> dict[str, Any]:
    fields: dict[str, Any] = {"ts": bar.open_time_ms, "close": bar.close, "open": bar.open, "high": bar.high,
                              "low": bar.low, "volume": bar.volume}
    if bar.extras:
        fields.update(bar.extras)
    return fields

