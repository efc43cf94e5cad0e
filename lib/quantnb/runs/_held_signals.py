"""Hold SIGINT/SIGTERM while a run writes its end, so a late interrupt cannot leave run.json at ``running``."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from loguru import logger

_HELD = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_held(restore: dict[int, Any] | None = None) -> Iterator[list[int]]:
    """Record SIGINT/SIGTERM instead of acting on them inside the block; yield the signals that arrived."""
    late: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield late
        return

    def hold(signum: int, frame: Any) -> None:
        late.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in _HELD}
    try:
        yield late
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, (restore or {}).get(sig, handler))


def redeliver(late: list[int], status: str, run_id: str) -> None:
    """Act on the signals held while run ``run_id`` ended: dropped if it ended interrupted, raised again otherwise."""
    if not late:
        return
    names = ", ".join(signal.Signals(s).name for s in dict.fromkeys(late))
    if status == "interrupted":  # the run already stopped for an interrupt and says how to resume
        logger.debug("Run {}: {} arrived while the interrupted run was being recorded; ignored", run_id, names)
        return
    logger.debug("Run {}: {} arrived while the run ended {}; delivered after its record was written",
                  run_id, names, status)
    for sig in dict.fromkeys(late):
        signal.raise_signal(sig)
