"""The item-executor interface and its local (process pool) implementation."""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from quantnb.errors import ConfigError, QuantnbError
from quantnb.runlog import worker_initializer

if TYPE_CHECKING:
    from quantnb.runlog import RunContext

ExecutorKind = Literal["local", "dask"]
EXECUTOR_FIELDS = frozenset({"executor", "scheduler"})  # how to run, not what: outside the config hash
# Dask settings of the LocalCluster a run starts and of `dask worker` started with DASK_CONFIG=<this file>;
# the file says why each one
DASK_CONFIG_FILE = Path(__file__).with_name("dask.yaml")


class ExecutorError(QuantnbError):
    """The executor itself failed: the run fails and can be resumed; no input file is blamed.

    A process pool broke, Dask workers died too often on one task, or the scheduler went away.
    """


class Completed:
    """One finished task: its key and its outcome.

    Parameters
    ----------
    key : str
        The key the task was submitted with (the item name).
    get : callable
        Returns the task's value or raises the task's own exception.
    """

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
        """Queue ``fn(*args)`` as the task of item ``key``.

        Parameters
        ----------
        key : str
            The item's identity (its checkpoint key); :meth:`as_completed` yields it back.
        fn : callable
            A module-level function (pickled to the worker).
        *args
            Its arguments, picklable.
        inputs : sequence of str
            Files the task reads, which the driver has seen; an executor whose workers may
            not share the driver's file system checks them there first (a worker that cannot
            see them is an :class:`ExecutorError`, not the item's fault).
        """

    def as_completed(self) -> Iterator[Completed]:
        """Yield every submitted task once, as it finishes (any order)."""

    def close(self) -> None:
        """Cancel what has not run and release the workers (idempotent)."""


class LocalExecutor:
    """Today's executor: a spawn-context process pool whose workers log into the session log.

    With ``n_workers == 1`` tasks run in this process, one at a time, as they are consumed.

    Parameters
    ----------
    n_workers : int
        Worker processes.
    initargs : tuple
        :meth:`quantnb.runlog.RunContext.worker_initargs` of the run.
    """

    def __init__(self, n_workers: int, initargs: tuple[Any, ...]):
        self._n_workers = n_workers
        self._initargs = initargs
        self._pool: ProcessPoolExecutor | None = None
        self._queued: list[tuple[str, Callable[..., Any], tuple[Any, ...]]] = []
        self._futures: dict[Future[Any], str] = {}

    def submit(self, key: str, fn: Callable[..., Any], *args: Any, inputs: Sequence[str] = ()) -> None:
        """Queue ``fn(*args)`` as the task of item ``key`` (in this process when ``n_workers == 1``).

        Parameters
        ----------
        key : str
            The item's identity (its checkpoint key); :meth:`as_completed` yields it back.
        fn : callable
            A module-level function (pickled to the worker).
        *args
            Its arguments, picklable.
        inputs : sequence of str
            Files the task reads; unused here (the workers share this machine's file system).
        """
        if self._n_workers == 1:
            self._queued.append((key, fn, args))
            return
        if self._pool is None:
            mp = multiprocessing.get_context("spawn")  # fork of a threaded kernel can deadlock polars
            self._pool = ProcessPoolExecutor(self._n_workers, mp_context=mp, initializer=worker_initializer,
                                             initargs=self._initargs)
        self._futures[self._pool.submit(fn, *args)] = key

    def as_completed(self) -> Iterator[Completed]:
        while self._queued:
            key, fn, args = self._queued.pop(0)
            yield Completed(key, lambda fn=fn, args=args: fn(*args))
        for fut in as_completed(list(self._futures)):
            exc = fut.exception()
            if isinstance(exc, BrokenProcessPool):
                raise ExecutorError(f"the local process pool broke while running {self._futures[fut]} "
                                    f"(a worker process died: out of memory or killed): {exc}; "
                                    "resume the run to redo the unfinished items") from exc
            yield Completed(self._futures.pop(fut), fut.result)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


@contextlib.contextmanager
def open_executor(
    executor: ExecutorKind, *, n_workers: int, scheduler: str | None, ctx: RunContext
) -> Iterator[ItemExecutor]:
    """Open the executor a stage's parameters ask for; close it however the block ends.

    Parameters
    ----------
    executor : {"local", "dask"}
        ``local``: a process pool on this machine. ``dask``: tasks on a Dask cluster.
    n_workers : int
        Local worker processes (``local``, or ``dask`` without a scheduler: the size of
        the ``distributed.LocalCluster`` started for the run).
    scheduler : str or None
        Dask scheduler address (``tcp://host:8786``); None starts a local cluster.
    ctx : RunContext
        The run (session log, third-party log levels, run id).

    Yields
    ------
    ItemExecutor

    Raises
    ------
    ConfigError
        On an unknown executor, a scheduler given with ``executor="local"``, or a Dask
        scheduler that cannot be reached.
    """
    if executor == "local":
        if scheduler is not None:
            raise ConfigError(f"scheduler={scheduler!r} is only used with executor='dask'; "
                              "set executor='dask' or leave scheduler unset")
        ex: ItemExecutor = LocalExecutor(n_workers, ctx.worker_initargs())
    elif executor == "dask":
        from quantnb.parallel._dask import DaskExecutor

        ex = DaskExecutor(n_workers=n_workers, scheduler=scheduler, run_id=ctx.run_id)
    else:
        raise ConfigError(f"executor={executor!r}: use 'local' (process pool) or 'dask'")
    try:
        yield ex
    finally:
        ex.close()
