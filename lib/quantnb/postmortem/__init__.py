"""Post-mortem of a run from its heartbeat TSVs, batch TSVs, heartbeat JSON, checkpoint and log."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantnb._lazy import attach

if TYPE_CHECKING:  # the names for type checkers; at run time each loads on first use
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

__getattr__, __dir__ = attach(__name__, {
    "LEAK_MIN_POINTS": "quantnb.postmortem._analyse",
    "LEAK_MIN_RISE_FRAC": "quantnb.postmortem._analyse",
    "LEAK_MIN_SLOPE_MB_PER_H": "quantnb.postmortem._analyse",
    "PostmortemReport": "quantnb.postmortem._analyse",
    "analyse_run": "quantnb.postmortem._analyse",
    "find_latest_run": "quantnb.postmortem._analyse",
    "is_leak": "quantnb.postmortem._analyse",
    "memory_trend": "quantnb.postmortem._analyse",
    "plot_learning_curve": "quantnb.postmortem._plots",
    "plot_memory": "quantnb.postmortem._plots",
    "plot_throughput": "quantnb.postmortem._plots",
    "plot_timeline": "quantnb.postmortem._plots",
})

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
