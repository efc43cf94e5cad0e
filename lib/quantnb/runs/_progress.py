"""Progress events: what the heartbeat records, offered to displays (widgets, tqdm, a monitor)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

from loguru import logger


@dataclasses.dataclass(frozen=True)
class ProgressEvent:
    """One progress update of a run, built from the same numbers as the heartbeat JSON.

    The one progress type: :class:`~quantnb.runs.RunContext` sends it to listeners and
    :class:`quantnb.display.ProgressDisplay` draws it.

    Attributes
    ----------
    done : int
        Items finished (completed or failed), this attempt and earlier ones.
    total : int or None
        Items in all; None while unknown.
    run_id, stage : str
        The run the event belongs to.
    kind : str
        ``start`` (run opened), ``item`` (:meth:`RunContext.item_done`), ``total``
        (:meth:`RunContext.set_total`), ``step`` (:meth:`RunContext.report_step`), ``beat``
        (liveness beat between items, or :meth:`RunContext.beat`) or ``finish`` (final status).
    rate_per_s : float or None
        Items per second in this process; None before the first item.
    eta_s : float or None
        Seconds left at the current rate; None without a total or a rate.
    rss_gb : float or None
        Resident memory of the process and its children, GB (1e9 bytes), as the heartbeat's
        ``memory_gb``; None when unknown.
    message : str
        The last item's name or the last :meth:`RunContext.beat` message.
    status : str
        ``running`` until ``finish``, then the run's final status.
    elapsed_s : float
        Seconds since this attempt started.
    events : int
        Events reported with the items (messages, samples, steps), all attempts.
    step_done, step_total : int or None
        Progress inside the current item (:meth:`RunContext.report_step`), e.g. batch 40 of 120;
        None when the stage reports none.
    step_unit : str
        What a step is (``batches``).
    context : str
        Where the steps are, e.g. ``trial 3 · epoch 2/5``.
    item_fraction : float or None
        Fraction of the current item done, in [0, 1] (for an ETA between items).
    """

    done: int
    total: int | None
    run_id: str = ""
    stage: str = ""
    kind: str = "item"
    rate_per_s: float | None = None
    eta_s: float | None = None
    rss_gb: float | None = None
    message: str = ""
    status: str = "running"
    elapsed_s: float = 0.0
    events: int = 0
    step_done: int | None = None
    step_total: int | None = None
    step_unit: str = ""
    context: str = ""
    item_fraction: float | None = None

    @property
    def fraction(self) -> float | None:
        """``done / total`` capped at 1, or None without a total."""
        if not self.total:
            return None
        return min(1.0, self.done / self.total)

    @property
    def progress(self) -> float:
        """Items finished plus the fraction of the current one (``2.33`` epochs)."""
        frac = self.item_fraction if self.item_fraction is not None and self.status == "running" else 0.0
        return self.done + (min(frac, 1.0) if self.total is None or self.done < self.total else 0.0)


def singular_unit(unit: str) -> str:
    """Return the singular of a plural unit name: ``batches`` -> ``batch``, ``epochs`` -> ``epoch``.

    Parameters
    ----------
    unit : str
        A unit name in the plural, as displays use them (``files``, ``trials``, ``batches``).

    Returns
    -------
    str
        The singular; a name not ending in ``s`` is returned unchanged.
    """
    if unit.endswith(("ches", "shes", "sses", "xes")):
        return unit[:-2]
    return unit[:-1] if unit.endswith("s") and len(unit) > 1 else unit


ProgressListener = Callable[[ProgressEvent], None]

_global_listeners: list[ProgressListener] = []
_global_lock = threading.Lock()


def add_progress_listener(listener: ProgressListener) -> Callable[[], None]:
    """Call ``listener`` with every :class:`ProgressEvent` of every run started in this process.

    For a display that must exist before the stage function opens its run (a notebook
    cell calling ``run_etl(params)``): the ``start`` event carries the new run's id.
    Listeners run in the thread that produced the event (the stage's thread for items,
    the heartbeat's daemon thread for beats); an exception in one is logged at DEBUG
    and never stops the run.

    Parameters
    ----------
    listener : callable
        Called with one :class:`ProgressEvent`.

    Returns
    -------
    callable
        Call it (no arguments) to remove the listener.
    """
    with _global_lock:
        _global_listeners.append(listener)

    def remove() -> None:
        with _global_lock:
            if listener in _global_listeners:
                _global_listeners.remove(listener)

    return remove


def global_listeners() -> list[ProgressListener]:
    """Return a snapshot of the process-wide listeners."""
    with _global_lock:
        return list(_global_listeners)


def notify(listeners: list[ProgressListener], event: ProgressEvent) -> None:
    """Call every listener with ``event``; a failing listener is logged at DEBUG and skipped."""
    for listener in listeners:
        try:
            listener(event)
        except Exception as exc:  # a display must never break a run
            logger.debug("progress listener {!r} failed: {}: {}", listener, type(exc).__name__, exc)
