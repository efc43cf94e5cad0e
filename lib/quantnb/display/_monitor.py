"""The run monitor widget: a table of runs that refreshes itself, each run's post-mortem one click away."""

from __future__ import annotations

import datetime as dt
import html
import threading
from pathlib import Path
from typing import Any

from quantnb.display._progress import _fmt_duration

__all__ = ["RunMonitor", "read_runs"]

_COLUMNS = ("run", "stage", "status", "progress", "ETA", "started UTC", "duration", "headline", "")
_WIDTHS = "minmax(110px,1fr) 64px 110px 100px 44px 96px 60px minmax(0,2fr) 108px"
_STATUS_COLOURS = {"completed": "#1a7f37", "completed_with_errors": "#9a6700", "failed": "#cf222e",
                   "interrupted": "#cf222e", "running": "#0969da", "pending": "#777"}


def _short_id(run_id: str, width: int = 12) -> str:
    """Return the end of a run id (its UTC timestamp tells runs apart); the full id is the cell's tooltip."""
    return run_id if len(run_id) <= width else "…" + run_id[-(width - 1):]


def _iso_to_dt(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)
    except ValueError:
        return None


def _fallback_rows(root: Path, stage: str | None) -> list[dict[str, Any]]:
    """Read runs/*/run.json and the heartbeat JSONs (used until ``quantnb.runlog.list_runs`` exists)."""
    from quantnb.runlog import read_heartbeat, read_run_record

    rows = []
    for rec_path in (root / "runs").glob("*/run.json"):
        rec = read_run_record(rec_path.parent) or {}
        run_id = rec_path.parent.name
        st = str(rec.get("stage") or run_id.split("_")[0])
        if stage and st != stage:
            continue
        hb = read_heartbeat(root / "logs" / "heartbeats" / f"{run_id}_heartbeat.json") or {}
        status = str(rec.get("status") or "unknown")
        if status == "running" and hb.get("status") == "interrupted":
            status = "interrupted"  # the process is dead
        done = hb.get("items_done")
        if done is None and hb:
            done = int(hb.get("completed_items") or 0) + int(hb.get("failed_items") or 0)
        started = _iso_to_dt(rec.get("started_at"))
        duration = rec.get("duration_s")
        if status == "running" and started is not None:
            duration = (dt.datetime.now(dt.UTC) - started).total_seconds()
        results = rec.get("metrics") or rec.get("results") or {}
        rows.append({"run_id": run_id, "stage": st, "status": status, "done": done,
                     "total": hb.get("total_items"), "eta_s": hb.get("eta_s") if status == "running" else None,
                     "started_at": started, "duration_s": duration, "log": rec.get("log"),
                     "headline": " ".join(f"{k}={v}" for k, v in results.items()
                                          if not isinstance(v, dict | list))[:80]})
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(rows, key=lambda r: (r["started_at"] or epoch, r["run_id"]), reverse=True)


def read_runs(project_dir: str | Path | None = None, stage: str | None = None) -> list[dict[str, Any]]:
    """Return one dict per run (newest first): run_id, stage, status, done, total, eta_s, started_at, ...

    Uses ``quantnb.runlog.list_runs`` (dead processes read ``interrupted``) when the
    installed quantnb has it, else a small reader of run.json and heartbeat files.

    Parameters
    ----------
    project_dir : str or pathlib.Path, optional
        Project directory; found from the cwd otherwise.
    stage : str, optional
        Only runs of this stage.

    Returns
    -------
    list of dict
        One dict per run, newest first.
    """
    from quantnb._paths import project_root

    root = project_root(project_dir)
    try:
        from quantnb.runlog import list_runs  # type: ignore[attr-defined]
    except ImportError:
        return _fallback_rows(root, stage)
    rows = []
    for s in list_runs(root, stage=stage):
        row = s.to_row() if hasattr(s, "to_row") else dict(s)
        row.setdefault("headline", getattr(s, "headline", ""))
        rows.append(row)
    return rows


class RunMonitor:
    """A self-refreshing table of runs (ipywidgets), with a post-mortem button per run.

    Display it as the last expression of a cell. A daemon thread re-reads the run
    records and heartbeat JSONs every ``refresh_s`` seconds, so the table keeps moving
    while runs go on in other kernels or terminals. The post-mortem button runs the
    post-mortem stage on that run in this kernel and shows its result below the table.

    Parameters
    ----------
    project_dir : str or pathlib.Path, optional
        Project directory; found from the cwd otherwise.
    stage : str, optional
        Only runs of this stage.
    refresh_s : float
        Seconds between refreshes; 0 refreshes only on the button.
    max_runs : int
        Newest runs shown.
    """

    def __init__(self, project_dir: str | Path | None = None, stage: str | None = None, refresh_s: float = 2.0,
                 max_runs: int = 30):
        import ipywidgets as w

        from quantnb._paths import project_root

        self.root = project_root(project_dir)
        self.stage = stage
        self.refresh_s = refresh_s
        self.max_runs = max_runs
        self.rows: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._signature: Any = None
        self._status = w.HTML()
        refresh = w.Button(description="Refresh", icon="refresh", layout=w.Layout(width="100px"))
        refresh.on_click(lambda _b: self.refresh())
        self._grid = w.GridBox(layout=w.Layout(grid_template_columns=_WIDTHS, grid_gap="2px 8px",
                                                align_items="center", width="100%"))
        self.output = w.Output()
        self.widget = w.VBox([w.HBox([refresh, self._status], layout=w.Layout(align_items="center")),
                              self._grid, self.output])
        self.widget.add_class("quantnb-monitor")
        self.refresh()
        if refresh_s > 0:
            threading.Thread(target=self._loop, name="quantnb-monitor", daemon=True).start()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def stop(self) -> None:
        """Stop refreshing."""
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.refresh_s):
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 (a torn file must not end the monitor)
                self._status.value = f"<span style='color:#cf222e'>refresh failed: {html.escape(str(exc))}</span>"

    def refresh(self) -> None:
        """Re-read the runs and redraw the rows that changed."""
        with self._lock:
            rows = read_runs(self.root, self.stage)[: self.max_runs]
            self.rows = rows
            now = dt.datetime.now(dt.UTC).strftime("%H:%M:%S")
            running = sum(r.get("status") == "running" for r in rows)
            self._status.value = (f"<span style='font-size:12px'>&nbsp;{len(rows)} run(s), {running} running · "
                                  f"<code>{html.escape(str(self.root))}</code> · updated {now} UTC</span>")
            signature = [(r["run_id"], r.get("status"), r.get("done"), r.get("total"), r.get("headline"),
                          round(r.get("duration_s") or 0)) for r in rows]
            if signature == self._signature:
                return
            self._signature = signature
            self._grid.children = self._cells(rows)

    def _cells(self, rows: list[dict[str, Any]]) -> list[Any]:
        import ipywidgets as w

        def cell(text: str, bold: bool = False, shown: str | None = None) -> Any:
            style = "font-weight:600;" if bold else ""
            return w.HTML(f"<div style='font-size:12px;{style}white-space:nowrap;overflow:hidden;width:100%;"
                          f"text-overflow:ellipsis' title='{html.escape(text)}'>{html.escape(shown or text)}</div>",
                          layout=w.Layout(min_width="0", width="100%", overflow="hidden"))

        cells: list[Any] = [cell(c, bold=True) for c in _COLUMNS]
        for r in rows:
            status = str(r.get("status"))
            colour = _STATUS_COLOURS.get(status, "#444")
            done, total = r.get("done"), r.get("total")
            progress = f"{done or 0}/{total}" if total else (str(done) if done else "")
            bar = w.FloatProgress(value=min((done or 0) / total, 1.0) if total else 0.0, min=0.0, max=1.0,
                                  layout=w.Layout(width="48px", min_width="48px"),
                                  bar_style="success" if status == "completed" else
                                  "danger" if status in ("failed", "interrupted") else "info")
            started = _iso_to_dt(r.get("started_at"))
            button = w.Button(description="post-mortem", layout=w.Layout(width="106px"),
                              tooltip=f"run the post-mortem of {r['run_id']}")
            button.on_click(lambda _b, rid=r["run_id"]: self.show_postmortem(rid))
            cells += [
                cell(r["run_id"], shown=_short_id(r["run_id"])), cell(str(r.get("stage"))),
                w.HTML(f"<span style='font-size:12px;color:{colour};font-weight:600'>{html.escape(status)}</span>",
                       layout=w.Layout(min_width="0", overflow="hidden")),
                w.HBox([bar, cell(progress)], layout=w.Layout(align_items="center", min_width="0")),
                cell(_fmt_duration(r.get("eta_s")) if r.get("eta_s") is not None else ""),
                cell(started.strftime("%Y-%m-%d %H:%M:%S") if started else "",
                     shown=started.strftime("%m-%d %H:%M:%S") if started else ""),
                cell(_fmt_duration(r.get("duration_s")) if r.get("duration_s") is not None else ""),
                cell(str(r.get("headline") or "")), button,
            ]
        return cells

    def show_postmortem(self, run_id: str) -> Any:
        """Run the post-mortem stage on ``run_id`` and show its result below the table.

        Parameters
        ----------
        run_id : str
            The run to analyse (a folder name under ``runs/``).

        Returns
        -------
        PostmortemResult
            The post-mortem stage's result (also displayed).
        """
        from IPython.display import display

        from quantnb.stages.postmortem import PostmortemParams, run_postmortem

        self.output.clear_output()
        with self.output:
            print(f"post-mortem of {run_id} …")
            result = run_postmortem(PostmortemParams(target_run_id=run_id, project_dir=str(self.root),
                                                     console_level="WARNING"))
            self.output.clear_output()
            display(result)
        return result
