"""An interrupted run in a notebook: one line (what stopped, what was saved, how to resume), not a traceback wall."""

from __future__ import annotations

from typing import Any

from quantnb.display._progress import _UNITS
from quantnb.runs import where_stopped

__all__ = ["interrupt_line", "show_interrupt_as_one_line"]


def interrupt_line(ctx: Any, reason: str) -> str:
    """Return the one line shown for an interrupted run: what stopped, what was saved, the resume command."""
    unit = _UNITS.get(ctx.stage, "items")
    done = len(ctx.checkpoint.completed)
    total = f"/{ctx.total_items}" if ctx.total_items else ""
    where = where_stopped(getattr(ctx, "_step", None), getattr(ctx, "_message", ""))
    by = " by SIGTERM" if "SIGTERM" in reason else ""
    stopped = f"run {ctx.run_id} interrupted{by}" + (f" {where}" if where.startswith("after ") else
                                                  f" during {where}" if where else "")
    return (f"{stopped}; {done}{total} {unit} finished and saved; resume: quantnb run {ctx.stage} --resume "
            f"{ctx.run_id} (or resume=True in the parameters cell)")


def show_interrupt_as_one_line(exc: BaseException, ctx: Any, reason: str) -> None:
    """Make IPython show ``exc`` as one line (:func:`interrupt_line`); it still propagates."""
    if getattr(exc, "_render_traceback_", None) is not None:
        return
    try:
        from IPython import get_ipython
    except ImportError:
        return
    if get_ipython() is None:
        return
    line = interrupt_line(ctx, reason)
    text = f"\x1b[1;31m{type(exc).__name__}\x1b[0m: {line}"
    try:
        setattr(exc, "_render_traceback_", lambda: [text])  # noqa: B010 - IPython's hook, not a declared attribute
    except AttributeError:  # an exception type with __slots__: IPython shows its traceback
        return
    if not exc.args:  # a bare KeyboardInterrupt(): the error's evalue (papermill, `quantnb run`) says it too
        exc.args = (line,)
