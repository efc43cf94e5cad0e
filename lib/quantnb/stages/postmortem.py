"""Post-mortem stage: where a run stopped, what it finished, memory and throughput over time."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger
from pydantic import Field

from quantnb.config import StageParams
from quantnb.display import HtmlResult
from quantnb.runs import atomic_write_json, debug_plots_dir, start_run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from quantnb.runs import PostmortemReport

__all__ = ["PostmortemParams", "PostmortemResult", "run_postmortem", "postmortem_of"]


class PostmortemParams(StageParams):
    """Parameters of the post-mortem stage."""

    stage = "postmortem"
    target_run_id: str | None = Field(None, description="Run to analyse; the latest run (of target_stage) if None.")
    target_stage: str | None = Field(None, description="With target_run_id None: the latest run of this stage.")

    def run_suffix(self) -> str:
        """Return the analysed run's stage (or ``latest``)."""
        return (self.target_run_id or self.target_stage or "latest").split("_")[0]


@dataclasses.dataclass
class PostmortemResult(HtmlResult):
    """A post-mortem: the report and its figures saved under debug_plots/<run_id>/.

    The figures are memory and throughput over time, and, when the run has them,
    learning curves (training, optimization) and the WARNING/ERROR timeline.
    """

    report: PostmortemReport
    figures: list[Figure]

    def summary(self) -> list[Figure]:
        """Print the report; return the figures (shown inline in a notebook)."""
        print(self.report.summary())
        return self.figures


def run_postmortem(params: PostmortemParams) -> PostmortemResult:
    """Analyse a run's heartbeats, batches, checkpoint and log; save plots and a JSON report.

    Parameters
    ----------
    params : PostmortemParams
        The stage's validated parameters (``target_run_id``, or the latest run).

    Returns
    -------
    PostmortemResult
        The report, its JSON path and the plots.

    Raises
    ------
    ConfigError
        If there is no run to analyse.

    Examples
    --------
    >>> result = run_postmortem(PostmortemParams(target_stage="etl"))  # the latest ETL run
    >>> result.report.status, result.report.memory_rising
    """
    import matplotlib.pyplot as plt  # heavy: imported by the run, not by the runner's parameter validation

    from quantnb.display import plot_learning_curve, plot_memory, plot_throughput, plot_timeline
    from quantnb.runs import analyse_run, find_latest_run  # polars, on first use

    with start_run(params) as ctx:
        target = params.target_run_id or find_latest_run(ctx.root, params.target_stage)
        logger.info("Post-mortem of run {}", target)
        report = analyse_run(ctx.root, target)
        for line in report.summary().splitlines():
            logger.debug(line)
        if report.memory_rising:
            t = report.memory_trend
            logger.warning("Memory rose {:+.0f} MB/h ({:+.0%} over the run, R^2 {:.2f}, {} points): possible leak",
                           t["slope_mb_per_h"], t["rise_frac"], t["r2"], t["points"])
        plots = debug_plots_dir(ctx.root, target)
        figures = [plot_memory(report, plots / "memory.png"), plot_throughput(report, plots / "throughput.png")]
        for extra in (plot_learning_curve(report, plots / "learning_curve.png"),
                      plot_timeline(report, plots / "timeline.png")):
            if extra is not None:
                figures.append(extra)
        for fig in figures:  # shown once, by the result's HTML, not again by pyplot's inline backend
            plt.close(fig)
        atomic_write_json(ctx.run_dir / "postmortem.json", report.to_dict())
        ctx.add_output("plots", plots)
        ctx.add_output("report", ctx.run_dir / "postmortem.json")
        ctx.set_result(target_run_id=target, target_status=report.status, items_done=report.items_done,
                       items_failed=report.items_failed, errors=report.log_counts.get("ERROR", 0))
        ctx.record_metrics(target_status=report.status, errors=report.log_counts.get("ERROR", 0),
                           possible_leak=report.memory_rising)
    return PostmortemResult(report, figures)


def postmortem_of(run_id: str, project_dir: str | Path) -> PostmortemResult:
    """Run the post-mortem stage on ``run_id`` with a quiet console: the run monitor's button.

    Parameters
    ----------
    run_id : str
        The run to analyse (a folder name under ``runs/``).
    project_dir : str or pathlib.Path
        The project holding it.

    Returns
    -------
    PostmortemResult
        As :func:`run_postmortem`; ``RunMonitor(postmortem=postmortem_of)`` shows it below the table.
    """
    return run_postmortem(PostmortemParams(target_run_id=run_id, project_dir=str(project_dir),
                                           console_level="WARNING"))
