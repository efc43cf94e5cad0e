from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from quantnb.postmortem._analyse import PostmortemReport


def plot_memory(report: PostmortemReport, path: Path) -> Figure:
    """Plot resident memory (GB) per heartbeat and per batch over time; save a PNG to ``path``.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (a notebook displays it inline).
    """
    fig, ax = plt.subplots(figsize=(8, 3.5))
    if not report.heartbeat.is_empty():
        ax.plot(report.heartbeat["timestamp"].to_list(), report.heartbeat["mem_gb"].to_list(),
                ".-", label="per item")
    if not report.batches.is_empty():
        ax.plot(report.batches["timestamp"].to_list(), report.batches["mem_gb"].to_list(),
                "s", label="per batch")
    ax.set_title(f"{report.run_id}: memory" + (" (rising at every batch)" if report.memory_rising else ""))
    ax.set_ylabel("RSS, GB")
    ax.legend(loc="best")
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return fig


def plot_throughput(report: PostmortemReport, path: Path) -> Figure:
    """Plot items finished per minute over time; save a PNG to ``path``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = plt.subplots(figsize=(8, 3.5))
    if not report.throughput.is_empty():
        ax.bar(report.throughput["minute"].to_list(), report.throughput["items"].to_list(), width=1 / 1440 * 0.8)
    ax.set_title(f"{report.run_id}: items per minute")
    ax.set_ylabel("items / min")
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return fig
