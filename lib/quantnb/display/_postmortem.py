"""Post-mortem figures: memory, throughput, learning curves and the WARNING/ERROR timeline.

Each ``plot_*(report, path)`` draws one figure of an analysed run (a
:class:`~quantnb.runs.PostmortemReport`), saves it as a PNG at ``path`` (its folder created) and
returns it; ``plot_learning_curve`` and ``plot_timeline`` return None, writing nothing, when the run
has nothing of theirs to plot.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from quantnb.display._html import integer_ticks
from quantnb.runs import LEAK_MIN_POINTS, PostmortemReport

_LEVEL_Y = {"WARNING": 0, "ERROR": 1, "CRITICAL": 2}
_LEVEL_COLOUR = {"WARNING": "tab:orange", "ERROR": "tab:red", "CRITICAL": "darkred"}


def _time_axis(ax: Axes, times: list[Any]) -> None:
    """Format the x axis as UTC clock times (with the date when the run spans days)."""
    stamps = [t for t in times if isinstance(t, dt.datetime)]
    span = (max(stamps) - min(stamps)) if stamps else dt.timedelta(0)
    fmt = "%m-%d %H:%M" if span > dt.timedelta(days=1) else "%H:%M:%S"
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=8))
    ax.xaxis.set_major_formatter(mdates.DateFormatter(fmt, tz=dt.UTC))
    day = f" ({min(stamps):%Y-%m-%d})" if stamps and span <= dt.timedelta(days=1) else ""
    ax.set_xlabel(f"time, UTC{day}")


def _save(fig: Figure, path: Path) -> Figure:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return fig


def plot_memory(report: PostmortemReport, path: Path) -> Figure:
    """Plot resident memory (GB) per heartbeat and per batch over time; save a PNG to ``path``.

    Parameters
    ----------
    report : PostmortemReport
        The run's post-mortem.
    path : pathlib.Path
        PNG to write (parent folders created).
    """
    fig, ax = plt.subplots(figsize=(8, 3.5))
    times: list[Any] = []
    if not report.heartbeat.is_empty():
        times += report.heartbeat["timestamp"].to_list()
        ax.plot(report.heartbeat["timestamp"].to_list(), report.heartbeat["mem_gb"].to_list(),
                ".-", label="per item")
    if not report.batches.is_empty():
        times += report.batches["timestamp"].to_list()
        ax.plot(report.batches["timestamp"].to_list(), report.batches["mem_gb"].to_list(),
                "s", label="per batch")
    trend = report.memory_trend.get("slope_mb_per_h")
    title = f"{report.run_id}: memory"
    if trend is not None and report.memory_trend.get("points", 0) >= LEAK_MIN_POINTS:  # a slope of a few
        # samples over seconds extrapolates to absurd MB/h: no trend is stated below the leak rule's minimum
        title += f" (trend {trend:+.0f} MB/h" + (", possible leak)" if report.memory_rising else ")")
    ax.set_title(title)
    ax.set_ylabel("RSS, GB")
    if times:
        _time_axis(ax, times)
        ax.legend(loc="best")
    return _save(fig, path)


def plot_throughput(report: PostmortemReport, path: Path) -> Figure:
    """Plot items finished per minute over time; save a PNG to ``path``.

    Parameters
    ----------
    report, path
        As for :func:`plot_memory`.
    """
    fig, ax = plt.subplots(figsize=(8, 3.5))
    if not report.throughput.is_empty():
        minutes = report.throughput["minute"].to_list()
        ax.bar(minutes, report.throughput["items"].to_list(), width=1 / 1440 * 0.8)
        _time_axis(ax, minutes)
    ax.set_title(f"{report.run_id}: items per minute")
    ax.set_ylabel("items / min")
    return _save(fig, path)


def plot_learning_curve(report: PostmortemReport, path: Path) -> Figure | None:
    """Plot loss and F1 macro per epoch (training) or F1 macro per trial (optimization); save a PNG.

    Parameters
    ----------
    report, path
        As for :func:`plot_memory`.

    Returns
    -------
    Figure or None
        None (nothing written) when the run has neither epochs nor trials.
    """
    curve, trials = report.learning_curve, report.trials
    if curve.is_empty() and trials.is_empty():
        return None
    if "train_loss" in curve.columns:
        fig, (ax_loss, ax_f1) = plt.subplots(1, 2, figsize=(10, 3.5))
        ax_loss.plot(curve["epoch"], curve["train_loss"], "o-", label="train loss")
        ax_loss.plot(curve["epoch"], curve["val_loss"], "o-", label="val loss")
        ax_loss.set_xlabel("epoch")
        ax_loss.set_ylabel("loss")
        ax_loss.legend(loc="best")
        ax_f1.plot(curve["epoch"], curve["f1_macro"], "o-", color="tab:green")
        ax_f1.set_xlabel("epoch")
        ax_f1.set_ylabel("val F1 macro")
        fig.suptitle(f"{report.run_id}: learning curves")
        integer_ticks(ax_loss, ax_f1)
        return _save(fig, path)
    fig, (ax_ep, ax_tr) = plt.subplots(1, 2, figsize=(10, 3.5))
    if not curve.is_empty():
        for trial in curve["trial"].unique().sort().to_list():
            sub = curve.filter(curve["trial"] == trial)
            ax_ep.plot(sub["epoch"], sub["f1_macro"], "o-", label=f"trial {trial}")
        ax_ep.legend(loc="best", fontsize="small")
    ax_ep.set_xlabel("epoch")
    ax_ep.set_ylabel("val F1 macro")
    if not trials.is_empty():
        ax_tr.plot(trials["trial"], trials["value"], "o", label="trial value")
        ax_tr.step(trials["trial"], trials["best_so_far"], where="post", label="best so far")
        ax_tr.legend(loc="best")
    ax_tr.set_xlabel("trial")
    ax_tr.set_ylabel("val F1 macro")
    fig.suptitle(f"{report.run_id}: optimization")
    integer_ticks(ax_ep, ax_tr)
    return _save(fig, path)


def plot_timeline(report: PostmortemReport, path: Path) -> Figure | None:
    """Plot every WARNING/ERROR/CRITICAL line of the log over time; save a PNG.

    Parameters
    ----------
    report, path
        As for :func:`plot_memory`.

    Returns
    -------
    Figure or None
        None (nothing written) when no such line has a timestamp.
    """
    tl = report.timeline.drop_nulls("timestamp") if not report.timeline.is_empty() else report.timeline
    if tl.is_empty():
        return None
    fig, ax = plt.subplots(figsize=(8, 2.5))
    for level, y in _LEVEL_Y.items():
        sub = tl.filter(tl["level"] == level)
        if sub.height:
            ax.plot(sub["timestamp"].to_list(), [y] * sub.height, "|", markersize=18,
                    color=_LEVEL_COLOUR[level], label=f"{level} ({sub.height})")
    ax.set_yticks(list(_LEVEL_Y.values()), list(_LEVEL_Y))
    ax.set_ylim(-0.7, 2.7)
    ax.set_title(f"{report.run_id}: warnings and errors")
    ax.legend(loc="upper left", fontsize="small")
    _time_axis(ax, tl["timestamp"].to_list())
    return _save(fig, path)
