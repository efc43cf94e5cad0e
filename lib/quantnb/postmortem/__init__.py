"""Post-mortem of a run from its heartbeat TSVs, batch TSVs, heartbeat JSON, checkpoint and log."""

from __future__ import annotations

from quantnb.postmortem._analyse import (
    LEAK_MIN_POINTS,
    LEAK_MIN_RISE_FRAC,
    LEAK_MIN_SLOPE_MB_PER_H,
    PostmortemReport,
    analyse_run,
    find_latest_run,
    is_leak,
    memory_trend,
)
from quantnb.postmortem._plots import plot_learning_curve, plot_memory, plot_throughput, plot_timeline

__all__ = [
    "PostmortemReport",
    "analyse_run",
    "find_latest_run",
    "memory_trend",
    "is_leak",
    "LEAK_MIN_POINTS",
    "LEAK_MIN_SLOPE_MB_PER_H",
    "LEAK_MIN_RISE_FRAC",
    "plot_memory",
    "plot_throughput",
    "plot_learning_curve",
    "plot_timeline",
]
