"""The run monitor widget: a table of runs that refreshes itself, each run's post-mortem one click away."""

from __future__ import annotations

import html
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quantnb._paths import project_root
from quantnb.display._progress import _fmt_duration
from quantnb.errors import ConfigError
from quantnb.runs import format_metrics, list_runs

__all__ = ["RunMonitor", "read_runs"]

_COLUMNS = ("run", "stage", "status", "progress", "ETA", "started UTC", "duration", "headline", "")
_WIDTHS = "minmax(150px,1.3fr) 84px 104px 100px 44px 96px 60px minmax(120px,2fr) 108px"
_HEADLINE_CHARS = 240  # metrics shown in the headline cell (wrapped over lines), about four lines
_STATUS_COLOURS = {"completed": "#1a7f37", "completed_with_errors": "#9a6700", "failed": "#cf222e",
                   "interrupted": "#cf222e", "running": "#0969da", "pending": "#777"}


def _short_id(run_id: str, stage: str = "") -> str:
    """Return the run id without its stage prefix (the stage has its column); the full id is the cell's tooltip."""
    prefix = f"{stage}_"
    return run_id[len(prefix):] if stage and run_id.startswith(prefix) and len(run_id) > len(prefix) else run_id


def read_runs(project_dir: str | Path | None = None, stage: str | None = None) -> list[dict[str, Any]]:
    """Return one dict per run (newest first): run_id, stage, status, done, total, eta_s, started_at, ..."""
    rows = []
    for s in list_runs(project_root(project_dir), stage=stage):
        row = s.to_row()
        if s.metrics:
            row["headline"] = format_metrics(s.stage, s.metrics, width=_HEADLINE_CHARS)
        elif s.error and row.get("status") not in ("completed", "running", "pending"):
            row["headline"] = str(s.error)[:_HEADLINE_CHARS]
        rows.append(row)
    return rows


class _Row:
    """The widgets of one run's row, built once; :meth:`update` changes only the cells whose text changed."""

    def __init__(self, run_id: str, on_postmortem: Callable[[str], Any] | None):
        import ipywidgets as w

        self.run_id = run_id
        self.texts: dict[str, Any] = {}
        for name in ("run", "stage", "status", "progress", "eta", "started", "duration", "headline"):
            self.texts[name] = w.HTML(layout=w.Layout(min_width="0", width="100%", overflow="hidden"))
        self.bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, layout=w.Layout(width="48px", min_width="48px"))
        button = w.Button(description="post-mortem", layout=w.Layout(width="106px"),
                          tooltip=f"run the post-mortem of {run_id}", disabled=on_postmortem is None)
        if on_postmortem is not None:
            button.on_click(lambda _b: on_postmortem(run_id))
        t = self.texts
        self.cells = [t["run"], t["stage"], t["status"],
                      w.HBox([self.bar, t["progress"]], layout=w.Layout(align_items="center", min_width="0")),
                      t["eta"], t["started"], t["duration"], t["headline"], button]

    def update(self, r: dict[str, Any]) -> None:
        status = str(r.get("status"))
        done, total = r.get("done"), r.get("total")
        started = r.get("started_at")  # a datetime: RunSummary parsed it
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
    """A self-refreshing table of runs (ipywidgets), with a post-mortem button per run when given one.

    Display it as the last expression of a cell. A daemon thread re-reads the run
    records and heartbeat JSONs every ``refresh_s`` seconds and changes only the cells
    whose text changed: a monitor with nothing running sends nothing to the browser
    (a kernel left open without a browser buffers nothing), a running run costs a
    few small messages per refresh. The post-mortem button calls ``postmortem`` on that run
    in this kernel and shows what it returns below the table.

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
    postmortem : callable, optional
        ``postmortem(run_id, project_dir)`` returns something to display, e.g.
        :func:`quantnb.stages.postmortem.postmortem_of`; None disables the buttons.
    """

    def __init__(self, project_dir: str | Path | None = None, stage: str | None = None, refresh_s: float = 2.0,
                 max_runs: int = 30, postmortem: Callable[[str, Path], Any] | None = None):
        import ipywidgets as w

        self.postmortem = postmortem
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
                    row = self._row_widgets[r["run_id"]] = _Row(
                        r["run_id"], self.show_postmortem if self.postmortem is not None else None)
                row.update(r)
            order = [r["run_id"] for r in rows]
            if order != self._order:  # a run came, went or moved: only then the grid's children change
                self._order = order
                self._grid.children = [*self._header, *(c for rid in order for c in self._row_widgets[rid].cells)]
                for rid in set(self._row_widgets) - set(order):
                    self._row_widgets.pop(rid).close()

    def show_postmortem(self, run_id: str) -> Any:
        """Call ``postmortem`` on ``run_id`` and show its result below the table.

        Parameters
        ----------
        run_id : str
            The run to analyse (a folder name under ``runs/``).

        Returns
        -------
        object
            What ``postmortem`` returned (also displayed).

        Raises
        ------
        ConfigError
            If the monitor was built without ``postmortem``.
        """
        from IPython.display import display

        if self.postmortem is None:
            raise ConfigError("this RunMonitor has no post-mortem: pass postmortem=postmortem_of "
                              "(from quantnb.stages.postmortem)")
        self.output.clear_output()
        with self.output:
            print(f"post-mortem of {run_id} …")
            result = self.postmortem(run_id, self.root)
            self.output.clear_output()
            display(result)
        return result
