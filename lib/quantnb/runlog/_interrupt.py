"""Why and where a run stopped, in one line (the run record, the log and the notebook say the same)."""

from __future__ import annotations

from typing import Any

from quantnb.runlog._progress import singular_unit

__all__ = ["interrupt_reason", "where_stopped"]

_SIGINT = "SIGINT (Ctrl-C, or Kernel > Interrupt in Jupyter)"


def where_stopped(step: dict[str, Any] | None, last_item: str) -> str:
    """Return where a run was: ``trial 1 · epoch 2/3`` from its last step, else ``after <last item>``.

    Parameters
    ----------
    step : dict or None
        The run's last :meth:`~quantnb.runlog.RunContext.report_step` fields.
    last_item : str
        The last finished item's name; ``""`` when none.
    """
    if step:
        unit = str(step.get("step_unit") or "steps")
        done, total = step.get("step_done"), step.get("step_total")
        here = f"{singular_unit(unit)} {done}/{total or '?'}" if done is not None else ""
        return " · ".join(p for p in (str(step.get("context") or ""), here) if p)
    return f"after {last_item}" if last_item else ""


def interrupt_reason(exc: BaseException, step: dict[str, Any] | None = None, last_item: str = "") -> str:
    """Return why and where a run stopped: ``KeyboardInterrupt: SIGINT (...) during trial 1 · epoch 2/3``.

    Parameters
    ----------
    exc : BaseException
        The interrupt (``KeyboardInterrupt``, :class:`~quantnb.errors.RunInterrupted`), perhaps
        chained under another exception.
    step : dict, optional
        The run's last :meth:`~quantnb.runlog.RunContext.report_step` fields
        (``context``, ``step_done``, ``step_total``, ``step_unit``).
    last_item : str
        The last finished item's name (``trial-0``), used when no step is known.

    Returns
    -------
    str
        One line, never empty: a bare ``KeyboardInterrupt()`` reads as SIGINT.
    """
    what = str(exc).strip()
    if not what and isinstance(exc, KeyboardInterrupt):
        what = _SIGINT
    where = where_stopped(step, last_item)
    text = f"{type(exc).__name__}: {what or 'stopped'}"
    if where:
        text += f" ({where})" if where.startswith("after ") else f" during {where}"
    return text
