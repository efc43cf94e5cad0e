"""One progress mechanism: a widget in JupyterLab, DEBUG lines in the session log when headless.

Fed by the same events that feed the heartbeat (:meth:`quantnb.runs.RunContext.item_done`):
files for the ETL and labelling, trials, epochs, SAC checkpoints, bars.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from loguru import logger

from quantnb.runs import ProgressEvent, singular_unit

__all__ = ["ProgressDisplay", "attach_progress", "in_interactive_frontend", "HEADLESS_ENV"]

#: Set to 1 by ``quantnb run`` in the kernel's environment: no widget, progress lines in the log.
HEADLESS_ENV = "QUANTNB_HEADLESS"
# Executors whose kernels nobody looks at (matched against the parent's argv, by base name).
_HEADLESS_PARENTS = frozenset({"papermill", "nbconvert", "nbclient", "jupyter-nbconvert", "jupyter-execute"})
_UNITS = {"etl": "files", "labelling": "files", "optimization": "trials", "training": "epochs",
          "agent": "checkpoints", "live": "bars", "postmortem": "items", "record": "shards", "download": "files"}
_WIDGET_MIN_INTERVAL_S = 0.25
_LOG_MIN_INTERVAL_S = 5.0
_MIN_RATE_WINDOW_S = 1.0  # a rate measured over less time jumps about


def in_interactive_frontend() -> bool:
    """Return whether code runs in a Jupyter kernel a person is looking at (not papermill, not a script)."""
    if os.environ.get(HEADLESS_ENV) == "1":
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    if ip is None or type(ip).__name__ != "ZMQInteractiveShell":
        return False
    try:
        import psutil

        argv = psutil.Process().parent().cmdline()
    except Exception:  # noqa: BLE001 (no parent information: assume a person)
        return True
    return not any(os.path.basename(arg) in _HEADLESS_PARENTS for arg in argv)


def _fmt_rate(rate_per_s: float, unit: str) -> str:
    """``3.1 files/s`` when fast; ``41 s/epoch`` or ``2.3 min/trial`` when an item takes a second or more."""
    if rate_per_s >= 10:
        return f"{rate_per_s:.0f} {unit}/s"
    if rate_per_s >= 1:
        return f"{rate_per_s:.1f} {unit}/s"
    per = 1.0 / rate_per_s
    one = singular_unit(unit)
    if per < 120:
        return f"{per:.1f} s/{one}" if per < 10 else f"{per:.0f} s/{one}"
    if per < 7200:
        return f"{per / 60:.1f} min/{one}"
    return f"{per / 3600:.1f} h/{one}"


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressDisplay:
    """Show a run's progress: a widget in JupyterLab, else a DEBUG line every few seconds."""

    def __init__(self, label: str, unit: str = "items", *, widget: bool | None = None):
        self.label = label
        self.unit = unit
        self._t0 = time.monotonic()
        self._first_done: int | None = None
        self._base: tuple[float, float] | None = None  # (time, progress) of the first item or step event
        self._last_draw = 0.0
        self._drawn_total: int | None = None
        self._last: ProgressEvent | None = None
        self._bar: Any = None
        self._text: Any = None
        self.box: Any = None
        use_widget = in_interactive_frontend() if widget is None else widget
        if use_widget:
            try:
                self._make_widget()
            except ImportError:
                self.box = None

    def _make_widget(self) -> None:
        import ipywidgets as w
        from IPython.display import display

        self._bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, bar_style="info",
                                    layout=w.Layout(width="220px", min_width="220px"))
        self._text = w.HTML(value=f"<code>{self.label}</code>: starting",
                            layout=w.Layout(min_width="0", overflow="hidden", flex="1 1 auto"))
        self.box = w.HBox([self._bar, self._text], layout=w.Layout(align_items="center", width="100%"))
        self.box.add_class("quantnb-progress")
        display(self.box)

    # -- events -----------------------------------------------------------------------
    def __call__(self, ev: ProgressEvent) -> None:
        """Take one progress event (what :meth:`quantnb.runs.RunContext.add_progress_listener` delivers)."""
        if self._last is not None:  # a total or final event: keep the last item and memory
            ev = dataclasses.replace(ev, message=ev.message or self._last.message,
                                     rss_gb=ev.rss_gb if ev.rss_gb is not None else self._last.rss_gb)
        self._last = ev
        now = time.monotonic()
        if self._first_done is None:
            self._first_done = ev.done
        if self._base is None and ev.kind in ("item", "step"):
            self._base = (now, ev.progress)
        final = ev.status != "running"
        interval = _WIDGET_MIN_INTERVAL_S if self.box is not None else _LOG_MIN_INTERVAL_S
        news = ev.total != self._drawn_total or ev.kind in ("start", "total")  # a total is shown at once
        if not final and not news and now - self._last_draw < interval and not (ev.total and ev.done >= ev.total):
            return
        self._last_draw = now
        self._drawn_total = ev.total
        if self.box is not None:
            self._draw_widget(ev)
        else:
            logger.debug("progress {}", self.line(ev))

    def _rate_per_s(self, ev: ProgressEvent) -> float | None:
        """Items per second: the sender's, else since this display started (this attempt's items)."""
        if self._base is not None:  # from the first item or step on: no set-up time, fractions of items count
            t0, p0 = self._base
            elapsed, n = time.monotonic() - t0, ev.progress - p0
            if elapsed >= _MIN_RATE_WINDOW_S and n > 0:
                return n / elapsed
        if ev.rate_per_s:
            return ev.rate_per_s
        elapsed = time.monotonic() - self._t0
        n = ev.done - (self._first_done or 0)
        return n / elapsed if elapsed > 0 and n > 0 else None

    def _eta_s(self, ev: ProgressEvent) -> float | None:
        """Seconds left: the sender's estimate, else at the current rate; None when unknown."""
        rate = self._rate_per_s(ev)
        if ev.eta_s is not None and (ev.item_fraction is None or rate is None):
            return ev.eta_s
        if not ev.total or rate is None:
            return None
        return max(ev.total - ev.progress, 0.0) / rate

    def line(self, ev: ProgressEvent) -> str:
        """Return ``2/10 epochs (23%) · epoch 3/10: batch 40/120 · 41 s/epoch · ETA 5:14 · RSS 0.45 GB``."""
        parts = [f"{ev.done}/{ev.total if ev.total else '?'} {self.unit}"]
        if ev.total:
            parts[0] += f" ({100.0 * min(ev.progress / ev.total, 1.0):.0f}%)"
        if ev.status == "running" and (ev.context or ev.step_done is not None):
            step = f"{singular_unit(ev.step_unit or 'steps')} {ev.step_done}/{ev.step_total or '?'}" \
                if ev.step_done is not None else ""
            parts.append(" · ".join(p for p in (ev.context, step) if p))
        rate = self._rate_per_s(ev)
        if rate is not None:
            parts.append(_fmt_rate(rate, self.unit))
        if ev.status == "running" and ev.total:  # open-ended (a recording, live): no "ETA ?" for ever
            parts.append(f"ETA {_fmt_duration(self._eta_s(ev))}")
        else:
            parts.append(f"{ev.status} in {_fmt_duration(time.monotonic() - self._t0)}")
        if ev.rss_gb is not None:
            parts.append(f"RSS {ev.rss_gb:.2f} GB")
        if ev.message:
            parts.append(f"last: {ev.message}")
        return " · ".join(parts)

    def _draw_widget(self, ev: ProgressEvent) -> None:
        import html

        frac = min(ev.done / ev.total, 1.0) if ev.total else 0.0
        self._bar.value = frac
        if ev.status == "running":
            self._bar.bar_style = "info"
        elif ev.status == "completed":
            self._bar.bar_style = "success"
            self._bar.value = 1.0 if ev.total else self._bar.value
        elif ev.status in ("failed", "interrupted"):
            self._bar.bar_style = "danger"
        else:
            self._bar.bar_style = "warning"
        line = html.escape(self.line(ev))
        self._text.value = (f"<div style='white-space:normal;overflow-wrap:anywhere;font-size:12px'"
                            f" title='{html.escape(self.label)}: {line}'>{line}</div>")

    def close(self) -> None:
        """Draw the last event (if throttled); the widget stays on the page with its final state."""
        if self._last is not None and self.box is not None:
            self._draw_widget(self._last)


def attach_progress(ctx: Any) -> ProgressDisplay:
    """Create a :class:`ProgressDisplay` for a run and subscribe it to the run's progress events."""
    display = ProgressDisplay(ctx.run_id, _UNITS.get(ctx.stage, "items"))
    ctx.add_progress_listener(display)
    return display
