"""What a front end hooks into every run: a progress display when it opens, a short line when it is interrupted.

The run spine knows no display; :mod:`quantnb.display` registers its widget and its one-line
interrupt here when it is imported (every stage module imports it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["RunStartHook", "InterruptHook", "on_run_start", "on_run_interrupt", "start_hooks", "interrupt_hooks"]

#: Called with the new :class:`~quantnb.runlog.RunContext` once its files are open, before its ``start`` event.
RunStartHook = Callable[[Any], None]
#: Called with the interrupt, the :class:`~quantnb.runlog.RunContext` and :func:`interrupt_reason`'s line.
InterruptHook = Callable[[BaseException, Any, str], None]

_start_hooks: list[RunStartHook] = []
_interrupt_hooks: list[InterruptHook] = []


def on_run_start(hook: RunStartHook) -> None:
    """Call ``hook(ctx)`` when any run of this process opens (registering the same hook twice adds it once).

    Parameters
    ----------
    hook : callable
        Receives the :class:`~quantnb.runlog.RunContext`; typically subscribes a progress
        display with ``ctx.add_progress_listener``. An exception it raises stops the run's start.
    """
    if hook not in _start_hooks:
        _start_hooks.append(hook)


def on_run_interrupt(hook: InterruptHook) -> None:
    """Call ``hook(exc, ctx, reason)`` when an interrupt (Ctrl-C, SIGTERM) leaves a run's ``with`` block.

    Parameters
    ----------
    hook : callable
        Receives the interrupt, the run and the one-line reason, before the run's end is
        recorded; the interrupt propagates afterwards whatever the hook does.
    """
    if hook not in _interrupt_hooks:
        _interrupt_hooks.append(hook)


def start_hooks() -> list[RunStartHook]:
    """Return the registered run-start hooks, in registration order."""
    return list(_start_hooks)


def interrupt_hooks() -> list[InterruptHook]:
    """Return the registered interrupt hooks, in registration order."""
    return list(_interrupt_hooks)
