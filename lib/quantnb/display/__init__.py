"""What a person sees of a run in a notebook: progress widgets and HTML summaries of results.

Results of every stage derive from :class:`HtmlResult`, whose ``_repr_html_`` renders here, so the last
line of a notebook cell (``result``) shows a compact table and the run's plots inline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantnb._lazy import attach
from quantnb.display._html import HtmlResult
from quantnb.display._interrupt import show_interrupt_as_one_line
from quantnb.display._monitor import RunMonitor
from quantnb.display._progress import HEADLESS_ENV, attach_progress
from quantnb.runs import on_run_interrupt, on_run_start

if TYPE_CHECKING:  # the post-mortem plots load matplotlib: on first use only
    from quantnb.display._postmortem import plot_learning_curve, plot_memory, plot_throughput, plot_timeline

__getattr__, __dir__ = attach(__name__)

__all__ = [
    "HEADLESS_ENV",
    "RunMonitor",
    "HtmlResult",
    "plot_learning_curve",
    "plot_memory",
    "plot_throughput",
    "plot_timeline",
]

# Every run of the process gets the progress display and the one-line interrupt: the run spine
# calls these hooks and imports no display (every stage module imports this package).
on_run_start(attach_progress)
on_run_interrupt(show_interrupt_as_one_line)
