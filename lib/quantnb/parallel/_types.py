"""What every executor shares: the task outcome, the interface, its error, the Dask settings file."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from quantnb.errors import QuantnbError

# Dask settings of the LocalCluster a run starts and of `dask worker` started with DASK_CONFIG=<this file>;
# the file says why each one
DASK_CONFIG_FILE = Path(__file__).with_name("dask.yaml")


class ExecutorError(QuantnbError):
    """The executor itself failed: the run fails and can be resumed; no input file is quarantined.

    A worker process was killed (out of memory, SIGKILL), Dask workers died too often on
    one task, the scheduler went away, or a worker cannot see an input the driver sees.
    """


class Completed:
    """One finished task: its key and its outcome."""

    __slots__ = ("key", "_get")

    def __init__(self, key: str, get: Callable[[], Any]):
        self.key = key
        self._get = get

    def result(self) -> Any:
        """Return the task's value; re-raise its exception (a ``DataError`` means quarantine)."""
        return self._get()


class ItemExecutor(Protocol):
    """What a file-parallel stage needs from an executor."""

    def submit(self, key: str, fn: Callable[..., Any], *args: Any, inputs: Sequence[str] = ()) -> None:
        """Queue ``fn(*args)`` (a module-level function, picklable arguments) as the task of item ``key``.

        ``inputs`` are the files the task reads, which the driver has seen; an executor whose
        workers may not share the driver's file system checks them there first (a worker that
        cannot see them is an :class:`ExecutorError`, not the item's fault).
        """

    def as_completed(self) -> Iterator[Completed]:
        """Yield every submitted task once, as it finishes (any order)."""

    def close(self) -> None:
        """Cancel what has not run and release the workers (idempotent)."""
