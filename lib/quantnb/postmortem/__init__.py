"""Post-mortem of a run from its heartbeat TSVs, batch TSVs, heartbeat JSON, checkpoint and log."""

from __future__ import annotations

from quantnb.postmortem._analyse import PostmortemReport, analyse_run, find_latest_run
from quantnb.postmortem._plots import plot_memory, plot_throughput

__all__ = ["PostmortemReport", "analyse_run", "find_latest_run", "plot_memory", "plot_throughput"]
