"""The local executor: a spawn-context process pool whose workers log into the session log, with a watchdog.

A worker killed mid-file (the out-of-memory killer, SIGKILL) breaks a ``ProcessPoolExecutor``;
CPython notices most deaths itself (``BrokenProcessPool``), but a worker killed while it held
the task queue can leave it waiting forever (CPython gh-94777), so the driver also polls the
worker processes. Either way the stage gets an :class:`ExecutorError` naming the file the dead
worker was processing (each worker notes its current item in a small file the driver reads).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import connection as mp_connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from loguru import logger

from quantnb.parallel._types import Completed, ExecutorError
from quantnb.runs import worker_initializer

_POLL_S = 1.0  # how often the driver looks for dead workers while it waits for results
_REAP_WAIT_S = 10.0  # longest wait for a dead worker's exit code (it is there within milliseconds)


def _tracked(marker_dir: str, key: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Worker: note the item this process runs (for the watchdog's message), run it, clear the note."""
    marker = Path(marker_dir, str(os.getpid()))
    marker.write_text(key, encoding="utf-8")
    try:
        return fn(*args)
    finally:
        marker.unlink(missing_ok=True)


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}" + (" (what the out-of-memory killer sends)" if -code == signal.SIGKILL else "")
    return f"exited with code {code}"


def _reap(pid: int) -> int | None:
    """Return a dead child's exit code (negative: signal) if no one has reaped it yet, else None."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if got else None


class LocalExecutor:
    """Run items in a process pool on this machine (in this process when one worker or one item)."""

    def __init__(self, n_workers: int, initargs: tuple[Any, ...], *, resume_hint: str | None = None):
        self._n_workers = n_workers
        self._initargs = initargs
        self._resume_hint = resume_hint
        self._queued: list[tuple[str, Callable[..., Any], tuple[Any, ...]]] = []
        self._pool: ProcessPoolExecutor | None = None
        self._procs: dict[int, BaseProcess] = {}
        self._markers: str | None = None
        self._broken = False

    def submit(self, key: str, fn: Callable[..., Any], *args: Any, inputs: Sequence[str] = ()) -> None:
        """Queue ``fn(*args)`` as the task of item ``key``; tasks start when :meth:`as_completed` is iterated."""
        self._queued.append((key, fn, args))

    def as_completed(self) -> Iterator[Completed]:
        """Yield each task as it finishes; in this process, in submission order, with one worker or one task."""
        queued, self._queued = self._queued, []
        if self._n_workers == 1 or len(queued) <= 1:
            for key, fn, args in queued:
                yield Completed(key, functools.partial(fn, *args))
            return
        self._markers = tempfile.mkdtemp(prefix="quantnb-pool-")
        mp = multiprocessing.get_context("spawn")  # fork of a threaded kernel can deadlock polars
        self._pool = ProcessPoolExecutor(min(self._n_workers, len(queued)), mp_context=mp,
                                         initializer=worker_initializer, initargs=self._initargs)
        pending: dict[Future[Any], str] = {self._pool.submit(_tracked, self._markers, key, fn, *args): key
                                           for key, fn, args in queued}
        while pending:
            self._procs.update(getattr(self._pool, "_processes", None) or {})  # pid -> Process (CPython's executor)
            done, _ = wait(pending, timeout=_POLL_S, return_when=FIRST_COMPLETED)
            broken = None
            for fut in [f for f in pending if f in done]:  # submission order; results before a crash are kept
                if isinstance(fut.exception(), BrokenProcessPool):
                    broken = fut.exception()
                    continue
                yield Completed(pending.pop(fut), fut.result)
            if broken is not None or (not done and any(p.exitcode is not None for p in self._procs.values())):
                raise self._crash_error(list(pending.values())) from broken

    def _crash_error(self, unfinished: list[str]) -> ExecutorError:
        """Name the file(s) the dead worker(s) were processing; the executor's SIGTERMs to the others come second."""
        self._broken = True
        procs = list(self._procs.values())  # the executor may see the pipe close before the process is reaped:
        for sentinel in mp_connection.wait([p.sentinel for p in procs], timeout=_REAP_WAIT_S):  # wait for that
            next(p for p in procs if p.sentinel == sentinel).join(timeout=_REAP_WAIT_S)
        dead = {pid: p.exitcode for pid, p in self._procs.items() if p.exitcode is not None}
        first = {pid: c for pid, c in dead.items() if c != -signal.SIGTERM} or dead
        running = {pid: self._marker(pid) for pid in dead}
        culprits = [f"{running[pid]} (its worker process {pid} {_exit_text(c)})" if running[pid]
                    else f"no file (worker process {pid} {_exit_text(c)} between files)" for pid, c in first.items()]
        if not culprits:  # the pool dropped its process table before the driver saw the death: the notes remain
            culprits = [f"{key} (its worker process {pid} {_exit_text(c) if (c := _reap(pid)) is not None else 'died'})"
                        for pid, key in self._left_notes().items()]
        others = sorted(k for pid, k in running.items() if k and pid not in first)
        return ExecutorError(
            f"the local worker pool crashed while processing {'; '.join(culprits) or 'an unknown file'}"
            + (f"; also interrupted: {', '.join(others)}" if others else "")
            + f". Nothing was quarantined: the {len(unfinished)} file(s) not finished stay not done; "
            f"resume the run{f' ({self._resume_hint})' if self._resume_hint else ''}, with fewer n_workers "
            "if memory is short")

    def _left_notes(self) -> dict[int, str]:
        """Return pid -> item of every note a worker left (a finished item removes its note)."""
        notes = Path(self._markers or "")
        return {int(f.name): k for f in (notes.iterdir() if self._markers and notes.is_dir() else ())
                if f.name.isdigit() and (k := self._marker(int(f.name)))}

    def _marker(self, pid: int) -> str | None:
        try:
            return Path(self._markers or "", str(pid)).read_text(encoding="utf-8") or None
        except OSError:
            return None

    def close(self) -> None:
        """Cancel the tasks not started and release the workers; after a crash, terminate the others."""
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                if self._broken:
                    for proc in list(self._procs.values()):
                        if proc.exitcode is None:
                            proc.terminate()
                pool.shutdown(wait=not self._broken, cancel_futures=True)
            except OSError as exc:  # a broken pool's shutdown can raise "handle is closed"
                logger.debug("worker pool shutdown after a crash: {}: {}", type(exc).__name__, exc)
        if self._markers is not None:
            shutil.rmtree(self._markers, ignore_errors=True)
            self._markers = None
