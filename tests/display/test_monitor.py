"""The run monitor: rows built once and changed in place, ids that keep what tells runs apart."""

from __future__ import annotations

import re

from quantnb.config import StageParams
from quantnb.runs import start_run


class LabelParams(StageParams):
    stage = "labelling"
    horizon: str = "30m"

    def run_suffix(self) -> str:
        return f"SELL_0004_BUY_0008_{self.horizon}"


def _live_widgets() -> int:
    import ipywidgets

    return len(ipywidgets.Widget.widgets)


def _texts(widget) -> list[str]:
    """The text of every HTML cell under ``widget``, tags removed."""
    out = [re.sub(r"<[^>]+>", "", widget.value)] if isinstance(getattr(widget, "value", None), str) else []
    for child in getattr(widget, "children", ()):
        out += _texts(child)
    return out


def test_a_running_run_changes_its_cells_without_building_new_widgets(tmp_path):
    from quantnb.display import RunMonitor

    for horizon in ("30m", "1h"):
        with start_run(LabelParams(horizon=horizon, project_dir=str(tmp_path), console_level=None)) as ctx:
            ctx.record_metrics(distribution="SELL 30% NEUTRAL 40% BUY 30%", files=12, rows_labelled=123456,
                               quarantined=0, lookahead_min=30, threshold_short_frac=-0.004)
    with start_run(LabelParams(horizon="2h", project_dir=str(tmp_path), console_level=None)) as running:
        running.set_total(10)
        monitor = RunMonitor(project_dir=tmp_path, refresh_s=0)
        grid = monitor._grid.children
        assert len(grid) == 9 * 4, "a header and three rows, shown from the first draw"
        widgets = _live_widgets()
        for i in range(3):
            running.item_done(f"file-{i}")
            running.heartbeat.flush(force=True)  # what the beat thread does within a second
            monitor.refresh()
        assert _live_widgets() == widgets, "a refresh built new widgets"
        assert monitor._grid.children == grid, "a refresh replaced the table's children"
        shown = _texts(monitor._grid)
        assert "3/10" in shown, shown
    for horizon in ("30m", "1h"):
        assert any(f"SELL_0004_BUY_0008_{horizon}_20" in s for s in shown), shown  # suffix and time, not "…"
    headline = next(s for s in shown if s.startswith("distribution="))
    assert "threshold_short_frac=-0.004" in headline, headline  # the headline is whole (wrapped, not cut)


def test_post_mortem_button_runs_the_stage_given_to_the_monitor(tmp_path):
    from quantnb.display import RunMonitor
    from quantnb.stages.postmortem import postmortem_of

    with start_run(LabelParams(project_dir=str(tmp_path), console_level=None)) as ctx:
        ctx.item_done("file-0")
    bare = RunMonitor(project_dir=tmp_path, refresh_s=0)
    button = bare._grid.children[-1]
    assert button.disabled, "a monitor without a post-mortem offers no button that does nothing"
    monitor = RunMonitor(project_dir=tmp_path, refresh_s=0, postmortem=postmortem_of)
    assert not monitor._grid.children[-1].disabled
    result = monitor.show_postmortem(ctx.run_id)
    assert result.report.run_id == ctx.run_id and result.report.status == "completed"
    assert (tmp_path / "debug_plots" / ctx.run_id / "memory.png").is_file()  # the stage saved its plots
