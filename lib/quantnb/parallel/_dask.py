"""Items as Dask tasks: a scheduler given by address, or a LocalCluster started for the run.

Worker-side, each task runs inside :func:`_run_task`, which adds a loguru sink for its own
thread and ships every record to the driver as a Dask event (``Worker.log_event``); the
driver subscribes to the run's topic and re-logs each record, with the worker's time,
module, line, process and thread, into its own sinks (the session log). A task returns how
many records it sent, and the driver waits for them before it hands the result to the
stage, so a file's log lines are in the session log before the checkpoint lists it.

The task's own exceptions travel back inside its result (a ``DataError`` quarantines the
file, as locally); failures of the cluster itself (a worker killed more often than
``distributed.scheduler.allowed-failures``, a lost scheduler, a worker that cannot see an
input file the driver sees) raise :class:`ExecutorError`.
A worker killed mid-task is normal: Dask reruns the task elsewhere and, since shards are
written atomically under a fixed name, the output is the same.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import socket
import threading
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

from distributed.diagnostics.plugin import WorkerPlugin
from loguru import logger

from quantnb.errors import ConfigError
from quantnb.parallel._types import DASK_CONFIG_FILE, Completed, ExecutorError

_LOG_WAIT_S = 10.0  # how long the driver waits for a finished task's log records to arrive
_CONNECT_TIMEOUT_S = 60



def _local_cluster_config() -> dict[str, Any]:
    """Return the settings of :data:`DASK_CONFIG_FILE` as dotted keys (``dask.config.set`` replaces a nested dict)."""
    import yaml

    def flat(d: dict[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    return flat(yaml.safe_load(DASK_CONFIG_FILE.read_text(encoding="utf-8")), "")


class _Ident:
    """Stands for loguru's process/thread record attribute (``{process.name}`` in formats)."""

    __slots__ = ("id", "name")

    def __init__(self, id_: int, name: str):
        self.id, self.name = id_, name

    def __repr__(self) -> str:
        return f"(id={self.id!r}, name={self.name!r})"

    def __format__(self, spec: str) -> str:
        return self.id.__format__(spec)


def _worker_time(ts: float) -> dt.datetime:
    try:  # loguru formats {time:...} with its own datetime subclass
        from loguru._datetime import datetime as loguru_datetime

        return loguru_datetime.fromtimestamp(ts, tz=dt.UTC)
    except ImportError:  # pragma: no cover - a loguru without the private module: arrival time
        return dt.datetime.fromtimestamp(ts, tz=dt.UTC)


def _unseen_input(inputs: Sequence[str]) -> str | None:
    """Return the first input this worker cannot stat, with the reason; None if it sees them all."""
    for path in inputs:
        try:
            os.stat(path)
        except OSError as exc:
            return f"{path} ({type(exc).__name__}: {exc.strerror or exc})"
    return None


def _run_task(topic: str, fn: Callable[..., Any], inputs: Sequence[str], *args: Any) -> dict[str, Any]:
    """Worker: check it sees ``inputs``, run ``fn(*args)``, forwarding this thread's loguru records."""
    from distributed import get_worker

    worker = get_worker()
    attempt, tid, sent = uuid.uuid4().hex, threading.get_ident(), 0
    process = f"dask-worker@{socket.gethostname()}/{os.getpid()}"
    unseen = _unseen_input(inputs)
    if unseen is not None:  # the driver saw this file: the worker's file system is at fault, not the data
        return {"attempt": attempt, "n_logs": 0,
                "infrastructure": f"Dask worker {worker.address} ({process}) cannot see the input {unseen}"}

    def ship(message: Any) -> None:
        nonlocal sent
        r = message.record
        text = r["message"]
        if r["exception"] is not None:
            e = r["exception"]
            text += "\n" + "".join(traceback.format_exception(e.type, e.value, e.traceback)).rstrip()
        worker.log_event(topic, {
            "attempt": attempt, "t": r["time"].timestamp(), "level": r["level"].name, "name": r["name"],
            "function": r["function"], "line": r["line"], "pid": os.getpid(), "process": process,
            "thread": r["thread"].name, "message": text})
        sent += 1

    handler = logger.add(ship, level="DEBUG", format="{message}", diagnose=False, catch=True,
                         filter=lambda r: r["thread"].id == tid)
    try:
        try:
            value = fn(*args)
        except Exception as exc:  # the item's own failure travels back to the driver as its result
            return {"attempt": attempt, "n_logs": sent, "error": exc, "traceback": traceback.format_exc()}
        return {"attempt": attempt, "n_logs": sent, "value": value}
    finally:
        logger.remove(handler)


class _QuietLoguru(WorkerPlugin):
    """Worker plugin for the run's own LocalCluster: no loguru stderr sink in its workers."""

    name = "quantnb-quiet-loguru"

    def setup(self, worker: Any) -> None:
        logger.remove()


def _unwrap(out: dict[str, Any]) -> Any:
    if "error" in out:
        raise out["error"]
    return out["value"]


class DaskExecutor:
    """Run items as tasks on a Dask cluster; see the module docstring."""

    def __init__(self, *, n_workers: int, scheduler: str | None, run_id: str):
        from distributed import Client, LocalCluster

        self._run_id = run_id
        self._topic = f"quantnb-log-{run_id}-{uuid.uuid4().hex[:8]}"
        self._seen: Counter[str] = Counter()
        self._cond = threading.Condition()
        self._futures: dict[Any, str] = {}
        self._cluster = None
        self._client = None
        try:
            if scheduler is None:
                import dask

                with dask.config.set(_local_cluster_config()):  # read once, when the cluster starts
                    self._cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                                 dashboard_address=None, memory_limit=0)
                logger.info("Dask: local cluster with {} worker process(es) at {}", n_workers,
                            self._cluster.scheduler_address)
            self._client = Client(self._cluster or scheduler, timeout=_CONNECT_TIMEOUT_S, set_as_default=False)
        except BaseException as exc:
            self.close(wait=True)
            if not isinstance(exc, OSError):  # OSError (TimeoutError): an unreachable scheduler
                raise
            raise ConfigError(f"scheduler={scheduler!r}: cannot reach the Dask scheduler ({exc}); start one "
                              "with `dask scheduler` and workers with `dask worker <address>`, or set "
                              "scheduler=None for a local cluster") from exc
        try:
            if self._cluster is not None:
                self._client.register_plugin(_QuietLoguru())
            else:
                n = len(self._client.scheduler_info().get("workers", {}))
                logger.info("Dask: scheduler {} with {} worker(s)", scheduler, n)
            self._client.subscribe_topic(self._topic, self._relay)
        except BaseException:
            self.close(wait=True)
            raise

    def _relay(self, event: tuple[float, dict[str, Any]]) -> None:
        """Driver (client event loop): re-log one worker record into this process's sinks."""
        _, rec = event
        t = _worker_time(rec["t"])
        process, thread = _Ident(rec["pid"], rec["process"]), _Ident(0, rec["thread"])
        # bound like captured streams: in the session log only, as records of local pool workers are
        fields = {"time": t, "name": rec["name"], "function": rec["function"], "line": rec["line"],
                  "process": process, "thread": thread}
        logger.patch(lambda r: cast("dict[str, Any]", r).update(fields)).bind(stream="dask-worker").log(
            rec["level"], "{}", rec["message"])
        with self._cond:
            self._seen[rec["attempt"]] += 1
            self._cond.notify_all()

    def _wait_logs(self, attempt: str, n: int, key: str) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._seen[attempt] >= n, timeout=_LOG_WAIT_S):
                logger.warning("{}: {} of the worker's {} log record(s) arrived within {:.0f} s",
                               key, self._seen[attempt], n, _LOG_WAIT_S)
            self._seen.pop(attempt, None)

    def submit(self, key: str, fn: Callable[..., Any], *args: Any, inputs: Sequence[str] = ()) -> None:
        """Queue ``fn(*args)`` as the task of item ``key`` on the cluster."""
        if self._client is None:
            raise ExecutorError("submit after close")
        fut = self._client.submit(_run_task, self._topic, fn, tuple(inputs), *args, pure=False,
                                  key=f"quantnb-{self._run_id}-{uuid.uuid4().hex}")
        self._futures[fut] = key

    def as_completed(self) -> Iterator[Completed]:
        """Yield each task as it finishes."""
        from distributed import as_completed

        if self._client is None:
            raise ExecutorError("as_completed after close")
        for fut in as_completed(list(self._futures), loop=self._client.loop):
            key = self._futures.pop(fut)
            if fut.status != "finished":
                reason = f"{type(fut.exception()).__name__}: {fut.exception()}" if fut.status == "error" \
                    else fut.status
                raise ExecutorError(f"Dask could not run the task of {key}: {reason}; resume the run "
                                    "to redo the unfinished items")
            try:
                out = fut.result()
            except Exception as exc:  # the result did not come back whole (e.g. it did not unpickle)
                yield Completed(key, functools.partial(_reraise, exc))
                continue
            finally:
                fut.release()
            self._wait_logs(out["attempt"], out["n_logs"], key)
            if "infrastructure" in out:
                raise ExecutorError(
                    f"{out['infrastructure']}, which the driver sees: every worker must see the inputs at the "
                    "same path as the driver (a shared or identically mounted folder). Nothing was quarantined; "
                    "fix that worker's mounts (or stop it), then resume the run to process the files not done")
            if "error" in out:
                logger.debug("{}: task raised on the worker:\n{}", key, out["traceback"].rstrip())
            yield Completed(key, functools.partial(_unwrap, out))

    def close(self, wait: bool = False) -> None:
        """Cancel the tasks not consumed, unsubscribe, close the client and the local cluster."""
        client, cluster, self._client, self._cluster = self._client, self._cluster, None, None
        if client is not None:
            if self._futures:
                client.cancel(list(self._futures))
                self._futures.clear()
            client.unsubscribe_topic(self._topic)
            client.close()
        if cluster is not None:
            if wait:
                cluster.close()
            else:
                threading.Thread(target=_close_cluster, args=(cluster,), name="quantnb-dask-close").start()


def _close_cluster(cluster: Any) -> None:
    try:
        cluster.close()
    except Exception as exc:  # the workers die with this process anyway; say so and go on
        logger.warning("Dask: closing the local cluster failed: {}: {}", type(exc).__name__, exc)


def _reraise(exc: BaseException) -> Any:
    raise exc
