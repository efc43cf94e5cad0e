"""Why and where a run stopped, in one line; and the hooks a front end adds to every run.

The run spine knows no display: :mod:`quantnb.display` registers its progress widget and its
one-line interrupt here when it is imported (every stage module imports it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quantnb.runs._progress import singular_unit

__all__ = ["interrupt_reason", "where_stopped", "on_run_start", "on_run_interrupt"]

START_HOOKS: list[Callable[[Any], object]] = []
INTERRUPT_HOOKS: list[Callable[[BaseException, Any, str], None]] = []


def on_run_start(hook: Callable[[Any], object]) -> None:
    """Call ``hook(ctx)`` when any run of this process opens, before its ``start`` event (once per hook).

    Parameters
    ----------
    hook : callable
        Receives the :class:`~quantnb.runs.RunContext`, e.g. to subscribe a progress display
        with ``ctx.add_progress_listener``; an exception it raises stops the run's start.
    """
    if hook not in START_HOOKS:
        START_HOOKS.append(hook)


def on_run_interrupt(hook: Callable[[BaseException, Any, str], None]) -> None:
    """Call ``hook(exc, ctx, reason)`` when an interrupt (Ctrl-C, SIGTERM) leaves a run (once per hook).

    Parameters
    ----------
    hook : callable
        Receives the interrupt, the run and :func:`interrupt_reason`'s line before the run's
        end is recorded; the interrupt propagates afterwards whatever the hook does.
    """
    if hook not in INTERRUPT_HOOKS:
        INTERRUPT_HOOKS.append(hook)


_SIGINT = "SIGINT (Ctrl-C, or Kernel > Interrupt in Jupyter)"


def where_stopped(step: dict[str, Any] | None, last_item: str) -> str:
    """Return where a run was: ``trial 1 · epoch 2/3`` from its last step, else ``after <last item>``.

    Parameters
    ----------
    step : dict or None
        The last progress step (``context``, ``step_unit``, ``step_done``, ``step_total``).
    last_item : str
        The last item finished; ``""`` if none (then ``""`` is returned without a step).
    """
    if step:
        unit = str(step.get("step_unit") or "steps")
        done, total = step.get("step_done"), step.get("step_total")
        here = f"{singular_unit(unit)} {done}/{total or '?'}" if done is not None else ""
        return " · ".join(p for p in (str(step.get("context") or ""), here) if p)
    return f"after {last_item}" if last_item else ""


def interrupt_reason(exc: BaseException, step: dict[str, Any] | None = None, last_item: str = "") -> str:
    """Return one line: why and where a run stopped (a bare ``KeyboardInterrupt()`` reads as SIGINT)."""
    what = str(exc).strip()
    if not what and isinstance(exc, KeyboardInterrupt):
        what = _SIGINT
    where = where_stopped(step, last_item)
    text = f"{type(exc).__name__}: {what or 'stopped'}"
    if where:
        text += f" ({where})" if where.startswith("after ") else f" during {where}"
    return text
