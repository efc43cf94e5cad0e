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
_WIDTHS = "minmax(150px,1.3fr) 84px 104px 100px 44px 96px 60px minmax(120px,2fr) 108px"
_HEADLINE_CHARS = 240  # metrics shown in the headline cell (wrapped over lines), about four lines
_STATUS_COLOURS = {"completed": "#1a7f37", "completed_with_errors": "#9a6700", "failed": "#cf222e",
                   "interrupted": "#cf222e", "running": "#0969da", "pending": "#777"}


def _short_id(run_id: str, stage: str = "") -> str:
    """Return the run id without its stage prefix (the stage has its column); the full id is the cell's tooltip.

    Nothing else is cut: the config suffix (``_30m`` or ``_1h``) and the timestamp both tell runs apart.
    """
    prefix = f"{stage}_"
    return run_id[len(prefix):] if stage and run_id.startswith(prefix) and len(run_id) > len(prefix) else run_id


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
                                          if not isinstance(v, dict | list))[:_HEADLINE_CHARS]})
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
    try:
        from quantnb.runlog._monitor import format_metrics
    except ImportError:
        format_metrics = None
    for s in list_runs(root, stage=stage):
        row = s.to_row() if hasattr(s, "to_row") else dict(s)
        row.setdefault("headline", getattr(s, "headline", ""))
        if format_metrics is not None and getattr(s, "metrics", None):  # whole: the table wraps, never cuts
            row["headline"] = format_metrics(s.stage, s.metrics, width=_HEADLINE_CHARS)
        elif getattr(s, "error", None) and row.get("status") not in ("completed", "running", "pending"):
            row["headline"] = str(s.error)[:_HEADLINE_CHARS]
        rows.append(row)
    return rows


class _Row:
    """The widgets of one run's row, built once; :meth:`update` changes only the cells whose text changed."""

    def __init__(self, run_id: str, on_postmortem: Any):
        import ipywidgets as w

        self.run_id = run_id
        self.texts: dict[str, Any] = {}
        for name in ("run", "stage", "status", "progress", "eta", "started", "duration", "headline"):
            self.texts[name] = w.HTML(layout=w.Layout(min_width="0", width="100%", overflow="hidden"))
        self.bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, layout=w.Layout(width="48px", min_width="48px"))
        button = w.Button(description="post-mortem", layout=w.Layout(width="106px"),
                          tooltip=f"run the post-mortem of {run_id}")
        button.on_click(lambda _b: on_postmortem(run_id))
        t = self.texts
        self.cells = [t["run"], t["stage"], t["status"],
                      w.HBox([self.bar, t["progress"]], layout=w.Layout(align_items="center", min_width="0")),
                      t["eta"], t["started"], t["duration"], t["headline"], button]

    def update(self, r: dict[str, Any]) -> None:
        status = str(r.get("status"))
        done, total = r.get("done"), r.get("total")
        started = _iso_to_dt(r.get("started_at"))
        values = {
            "run": _cell(self.run_id, shown=_short_id(self.run_id, str(r.get("stage") or "")), wrap=True, is_id=True),
            "stage": _cell(str(r.get("stage")), wrap=True),
            "status": (f"<span style='font-size:12px;color:{_STATUS_COLOURS.get(status, '#444')};font-weight:600'>"
                       f"{html.escape(status)}</span>"),
            "progress": _cell(f"{done or 0}/{total}" if total else (str(done) if done else "")),
            "eta": _cell(_fmt_duration(r.get("eta_s")) if r.get("eta_s") is not None else ""),
            "started": _cell(started.strftime("%Y-%m-%d %H:%M:%S") if started else "",
                             shown=started.strftime("%m-%d %H:%M:%S") if started else ""),
            "duration": _cell(_fmt_duration(r.get("duration_s")) if r.get("duration_s") is not None else ""),
            "headline": _cell(str(r.get("headline") or ""), wrap=True),
        }
        for name, value in values.items():
            if self.texts[name].value != value:  # an unchanged cell sends nothing to the browser
                self.texts[name].value = value
        frac = min((done or 0) / total, 1.0) if total else 0.0
        style = "success" if status == "completed" else "danger" if status in ("failed", "interrupted") else "info"
        if self.bar.value != frac:
            self.bar.value = frac
        if self.bar.bar_style != style:
            self.bar.bar_style = style

    def close(self) -> None:
        for c in self.cells:
            for child in getattr(c, "children", ()):
                child.close()
            c.close()


def _cell(text: str, bold: bool = False, shown: str | None = None, wrap: bool = False, is_id: bool = False) -> str:
    """Return a cell's HTML; ``wrap`` breaks long ids and headlines over lines instead of hiding their ends."""
    style = "font-weight:600;" if bold else ""
    flow = ("white-space:normal;overflow-wrap:break-word;line-height:1.25;" if wrap
            else "white-space:nowrap;overflow:hidden;text-overflow:ellipsis;")
    body = html.escape(shown or text)
    if is_id:  # break ids after their underscores (SELL_0004_BUY_0008_30m_ | 20261207_072745), not inside a token
        body = body.replace("_", "_<wbr>")
    return f"<div style='font-size:12px;{style}{flow}width:100%' title='{html.escape(text)}'>{body}</div>"


class RunMonitor:
    """A self-refreshing table of runs (ipywidgets), with a post-mortem button per run.

    Display it as the last expression of a cell. A daemon thread re-reads the run
    records and heartbeat JSONs every ``refresh_s`` seconds and changes only the cells
    whose text changed: a monitor with nothing running sends nothing to the browser
    (a kernel left open without a browser buffers nothing), a running run costs a
    few small messages per refresh. The post-mortem button runs the post-mortem stage
    on that run in this kernel and shows its result below the table.

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
        self._row_widgets: dict[str, _Row] = {}
        self._order: list[str] | None = None
        self._files: tuple = ()
        self._status = w.HTML()
        refresh = w.Button(description="Refresh", icon="refresh", layout=w.Layout(width="100px"))
        refresh.on_click(lambda _b: self.refresh())
        self._header = [w.HTML(_cell(c, bold=True), layout=w.Layout(min_width="0", width="100%"))
                        for c in _COLUMNS]
        self._grid = w.GridBox(self._header, layout=w.Layout(grid_template_columns=_WIDTHS, grid_gap="2px 8px",
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
                self.refresh(force=False)
            except Exception as exc:  # noqa: BLE001 (a torn file must not end the monitor; the rows stay)
                text = f"<span style='color:#cf222e'>refresh failed: {html.escape(str(exc))}</span>"
                if self._status.value != text:
                    self._status.value = text

    def _files_signature(self) -> tuple:
        """Modification times of every run record and heartbeat: unchanged means nothing to re-read."""
        out = []
        for pattern in ("runs/*/run.json", "logs/heartbeats/*.json"):
            for path in self.root.glob(pattern):
                try:
                    out.append((str(path), path.stat().st_mtime_ns))
                except OSError:  # removed meanwhile
                    continue
        return tuple(sorted(out))

    def refresh(self, force: bool = True) -> None:
        """Re-read the runs; add, move or drop rows as runs come and go, and change only the cells that changed.

        Parameters
        ----------
        force : bool
            Re-read even when no run record or heartbeat file changed and nothing runs (the
            refresh thread passes False: an idle monitor reads a directory listing, not every file).
        """
        files = self._files_signature()
        if not force and files == self._files and not any(r.get("status") == "running" for r in self.rows):
            return
        self._files = files
        with self._lock:
            rows = read_runs(self.root, self.stage)[: self.max_runs]
            self.rows = rows
            running = sum(r.get("status") == "running" for r in rows)
            every = f"refreshed every {self.refresh_s:g} s" if self.refresh_s > 0 else "refreshed on the button"
            status = (f"<span style='font-size:12px'>&nbsp;{len(rows)} run(s), {running} running · "
                      f"<code>{html.escape(str(self.root))}</code> · {every}</span>")
            if self._status.value != status:
                self._status.value = status
            for r in rows:
                row = self._row_widgets.get(r["run_id"])
                if row is None:
                    row = self._row_widgets[r["run_id"]] = _Row(r["run_id"], self.show_postmortem)
                row.update(r)
            order = [r["run_id"] for r in rows]
            if order != self._order:  # a run came, went or moved: only then the grid's children change
                self._order = order
                self._grid.children = [*self._header, *(c for rid in order for c in self._row_widgets[rid].cells)]
                for rid in set(self._row_widgets) - set(order):
                    self._row_widgets.pop(rid).close()

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
