"""Progress events: what the heartbeat records, offered to displays (widgets, tqdm, a monitor)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

from loguru import logger


@dataclasses.dataclass(frozen=True)
class ProgressEvent:
    """One progress update of a run (RunContext sends it to listeners), from the heartbeat's numbers."""

    done: int  # items finished (completed or failed), this attempt and earlier ones
    total: int | None  # None while unknown
    run_id: str = ""
    stage: str = ""
    kind: str = "item"  # start, item, total, step (report_step), beat (liveness or ctx.beat) or finish
    rate_per_s: float | None = None  # items per second in this process
    eta_s: float | None = None  # at the current rate
    rss_gb: float | None = None  # process and children, GB (1e9 bytes), as the heartbeat's memory_gb
    message: str = ""  # the last item's name or beat message
    status: str = "running"  # until finish, then the run's final status
    elapsed_s: float = 0.0  # since this attempt started
    events: int = 0  # reported with the items (messages, samples, steps), all attempts
    step_done: int | None = None  # inside the current item (report_step), e.g. batch 40 of 120
    step_total: int | None = None
    step_unit: str = ""  # "batches"
    context: str = ""  # where the steps are: "trial 3 · epoch 2/5"
    item_fraction: float | None = None  # of the current item done, in [0, 1] (an ETA between items)

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
    """Return the singular of a plural unit name (``batches`` -> ``batch``); others unchanged.

    Parameters
    ----------
    unit : str
        English noun, such as ``epochs`` or ``files``.
    """
    if unit.endswith(("ches", "shes", "sses", "xes")):
        return unit[:-2]
    return unit[:-1] if unit.endswith("s") and len(unit) > 1 else unit


ProgressListener = Callable[[ProgressEvent], None]

_global_listeners: list[ProgressListener] = []
_global_lock = threading.Lock()


def add_progress_listener(listener: ProgressListener) -> Callable[[], None]:
    """Call ``listener`` with every progress event of every run of this process; return its remover."""
    # listeners run in the producing thread; an exception in one is logged at DEBUG, never stops the run
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
