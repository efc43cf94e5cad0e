"""start_run and RunContext: one run's identity, sinks, heartbeats, checkpoint and record."""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
from loguru import logger

from quantnb._paths import project_root
from quantnb.config import StageParams
from quantnb.errors import ConfigError, RunInterrupted
from quantnb.runlog._atomic import read_json_tolerant
from quantnb.runlog._capture import LOG_FORMAT, configure_sinks, configure_worker
from quantnb.runlog._checkpoint import Checkpoint
from quantnb.runlog._heartbeat import (
    BATCH_COLUMNS,
    HEARTBEAT_COLUMNS,
    HeartbeatJson,
    TsvLog,
    iso,
    memory_gb,
    utc_now,
)
from quantnb.runlog._record import (
    git_commit,
    package_versions,
    read_run_record,
    update_run_record,
)

_TS_FORMAT = "%Y%m%d_%H%M%S"


def make_run_id(stage: str, suffix: str, started: dt.datetime) -> str:
    """Return ``<stage>_<suffix>_<YYYYMMDD_HHMMSS>`` (UTC), the run's directory and log name."""
    return f"{stage}_{suffix}_{started.astimezone(dt.UTC).strftime(_TS_FORMAT)}"


def new_run_id(params: StageParams, root: Path) -> str:
    """Derive a fresh run id for ``params`` and claim ``root/runs/<run_id>/`` for it.

    The directory is created with ``mkdir`` (no ``exist_ok``), which succeeds for one
    process only, so two runs started in the same second by two processes get two ids.
    """
    base = make_run_id(params.stage, params.run_suffix(), utc_now())
    (root / "runs").mkdir(parents=True, exist_ok=True)
    run_id, n = base, 1
    while True:
        try:
            (root / "runs" / run_id).mkdir()
            return run_id
        except FileExistsError:
            n += 1
            run_id = f"{base}-{n}"


def _find_resumable(root: Path, stage: str, config_hash: str) -> str | None:
    """Latest run of ``stage`` with the same config hash that did not complete."""
    candidates = []
    for rec_path in (root / "runs").glob(f"{stage}_*/run.json"):
        rec = read_run_record(rec_path.parent)
        if rec and rec.get("config_hash") == config_hash and rec.get("status") != "completed":
            candidates.append((rec.get("started_at", ""), rec_path.parent.name))
    return max(candidates)[1] if candidates else None


def is_interrupt(exc: BaseException | None) -> bool:
    """Return whether ``exc`` is, or was caused by, an interrupt (SIGINT/SIGTERM, :class:`RunInterrupted`).

    A signal that arrives inside C code can surface as another exception (CPython raises
    ``SystemError: ... returned a result with an exception set``) with the
    ``KeyboardInterrupt`` chained as its context; code that catches ``Exception`` to
    quarantine one bad item must re-raise these instead.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt | RunInterrupted):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


class RunContext:
    """One run of a stage: its identity, files, heartbeats and checkpoint.

    Build it with :func:`start_run`; use it as a context manager so the run ends with
    the right status (``completed``, ``completed_with_errors``, ``failed`` or
    ``interrupted``) whatever happens in the block.

    Attributes
    ----------
    run_id : str
        ``<stage>_<suffix>_<YYYYMMDD_HHMMSS>``; also the run name of the heartbeat and
        checkpoint files.
    root, run_dir, log_path : pathlib.Path
        Project directory, ``runs/<run_id>/`` and the session log.
    checkpoint : Checkpoint
        Finished and failed items; ``resume`` skips the finished ones.
    resumed : bool
        Whether this run continues an earlier attempt.
    """

    def __init__(self, params: StageParams, root: Path, run_id: str, resumed: bool):
        self.params = params
        self.stage = params.stage
        self.root = root
        self.run_id = run_id
        self.run_name = run_id
        self.resumed = resumed
        self.config_hash = params.config_hash()
        self.run_dir = root / "runs" / run_id
        self.stage_log_dir = root / "logs" / self.stage
        self.log_path = self.stage_log_dir / f"{run_id}.log"
        self.started_at = utc_now()
        self.status = "running"
        self.outputs: dict[str, str] = {}
        self.results: dict[str, Any] = {}
        self.total_items: int | None = None
        self.total_batches: int | None = None
        self.events = 0
        self._items_this_process = 0
        self._t0 = time.monotonic()
        self._closed = False
        self._progress_listeners: list[Any] = []

    # -- set-up ------------------------------------------------------------------------
    def _open(self) -> None:
        p = self.params
        self._sinks = configure_sinks(
            self.log_path,
            console_level=p.console_level,
            rotation_mb=p.rotation_mb,
            retention_days=p.retention_days,
            third_party_levels=p.third_party_levels,
        )
        day = self.started_at.strftime("%Y%m%d")
        self.heartbeat_tsv = TsvLog(self.stage_log_dir / f"heartbeat_{day}.log", HEARTBEAT_COLUMNS)
        self.batch_tsv = TsvLog(self.stage_log_dir / f"batches_{day}.log", BATCH_COLUMNS)
        proc = psutil.Process()
        hb_path = self.root / "logs" / "heartbeats" / f"{self.run_name}_heartbeat.json"
        if self.resumed:  # totals are known from the earlier attempt until set_total says otherwise
            previous = read_json_tolerant(hb_path) or {}
            self.total_items = previous.get("total_items")
            self.total_batches = previous.get("total_batches")
            self.events = int(previous.get("events") or 0)
        self.heartbeat = HeartbeatJson(
            hb_path,
            {"run_id": self.run_id, "stage": self.stage, "pid": os.getpid(),
             "pid_create_time": proc.create_time(), "started_at": iso(self.started_at)},
        )
        self.checkpoint = Checkpoint(
            self.root / "logs" / "checkpoints" / f"{self.run_name}_completed.json",
            self.run_id, self.config_hash, resume=self.resumed,
        )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        update_run_record(
            self.run_dir, run_id=self.run_id, stage=self.stage, status="running",
            config_hash=self.config_hash, parameters=p.model_dump(mode="json"),
            started_at=self.run_dir_started_at(), resumed_at=iso(self.started_at) if self.resumed else None,
            pid=os.getpid(), log=str(self.log_path.relative_to(self.root)),
            git_commit=git_commit(self.root), versions=package_versions(),
        )
        self._heartbeat_write(force=True)
        self._install_sigterm()
        from quantnb.display import attach_progress  # a widget in JupyterLab, log lines otherwise

        attach_progress(self)
        verb = "Resuming" if self.resumed else "Starting"
        logger.info("{} run {} (stage {}, config {})", verb, self.run_id, self.stage, self.config_hash)
        logger.info("Session log: {}", self.log_path)
        if self.resumed:
            logger.info("Checkpoint lists {} completed and {} failed item(s)",
                        len(self.checkpoint.completed), len(self.checkpoint.failed))
        logger.debug("Parameters: {}", p.model_dump(mode="json"))

    def run_dir_started_at(self) -> str:
        """Return when the run first started (an earlier attempt's start on resume), ISO UTC."""
        rec = read_run_record(self.run_dir)
        return (rec or {}).get("started_at") or iso(self.started_at)

    def _install_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def on_sigterm(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

        signal.signal(signal.SIGTERM, on_sigterm)

    # -- progress ------------------------------------------------------------------------
    def set_total(self, total_items: int | None, total_batches: int | None = None) -> None:
        """Declare how many items (and batches) the run has in all, for progress and ETA."""
        self.total_items = total_items
        self.total_batches = total_batches
        self._heartbeat_write(force=True)
        self._emit_progress("")

    def item_done(
        self,
        item: str,
        events: int = 0,
        batch_num: int | None = None,
        total_batches: int | None = None,
    ) -> None:
        """Record one finished item: a heartbeat TSV line, and the heartbeat JSON if due.

        Parameters
        ----------
        item : str
            Name of the item (a file, an epoch, a trial, a bar).
        events : int
            Events the item held (messages, samples, steps).
        batch_num, total_batches : int, optional
            The shard the item goes to, and the expected number of shards.
        """
        self.events += events
        self._items_this_process += 1
        if total_batches is not None:
            self.total_batches = total_batches
        now, mem = utc_now(), memory_gb()
        self.heartbeat_tsv.append(
            iso(now), item, batch_num if batch_num is not None else "",
            self.total_batches if self.total_batches is not None else "",
            events, f"{mem:.3f}", self.run_id,
        )
        if self.heartbeat.due():
            self._heartbeat_write(last_item=item, batch_num=batch_num, memory_gb=round(mem, 3))
        else:
            self.heartbeat.state.update(last_item=item, batch_num=batch_num)
        self._emit_progress(item, mem)

    def add_progress_listener(self, listener: Any) -> None:
        """Call ``listener`` with a progress mapping (done, total, message, rss_gb, status) per event."""
        self._progress_listeners.append(listener)

    def _emit_progress(self, message: str, mem_gb: float | None = None) -> None:
        if not self._progress_listeners:
            return
        done = max(len(self.checkpoint.completed) + len(self.checkpoint.failed), self._items_this_process)
        event = {"done": done, "total": self.total_items, "message": message, "status": self.status,
                 "rss_gb": mem_gb if mem_gb is not None else memory_gb(), "eta_s": self._eta_s()}
        for listener in list(self._progress_listeners):
            try:
                listener(event)
            except Exception as exc:  # a display must never break a run
                logger.debug("progress listener failed: {}: {}", type(exc).__name__, exc)

    def batch_saved(self, batch_num: int, items_count: int, total_events: int, shard_file: str | Path) -> None:
        """Record one shard durably written: a batch TSV line."""
        self.batch_tsv.append(
            iso(utc_now()), batch_num, items_count, total_events, str(shard_file),
            f"{memory_gb():.3f}", self.run_id,
        )
        self._heartbeat_write(batch_num=batch_num, force=True)

    def progress_pct(self) -> float | None:
        """Percent of items finished (completed or failed), or None without a total."""
        if not self.total_items:
            return None
        done = len(self.checkpoint.completed) + len(self.checkpoint.failed)
        return min(100.0, 100.0 * done / self.total_items)

    def _eta_s(self) -> float | None:
        if not self.total_items or not self._items_this_process:
            return None
        done = len(self.checkpoint.completed) + len(self.checkpoint.failed)
        rate = self._items_this_process / max(time.monotonic() - self._t0, 1e-9)
        return max(self.total_items - done, 0) / rate

    def _heartbeat_write(self, force: bool = False, **fields: Any) -> None:
        fields.setdefault("memory_gb", round(memory_gb(), 3))
        self.heartbeat.update(
            force=force, status=self.status, last_timestamp=iso(utc_now()),
            total_items=self.total_items, total_batches=self.total_batches,
            completed_items=len(self.checkpoint.completed), failed_items=len(self.checkpoint.failed),
            progress_pct=self.progress_pct(), events=self.events, eta_s=self._eta_s(), **fields,
        )

    # -- outputs and end -------------------------------------------------------------------
    def add_output(self, name: str, path: str | Path) -> None:
        """Name an output of the run (recorded in run.json, shown by the pipeline summary)."""
        p = Path(path)
        self.outputs[name] = str(p.relative_to(self.root) if p.is_absolute() and p.is_relative_to(self.root) else p)

    def set_result(self, **values: Any) -> None:
        """Record summary values of the run (JSON-serialisable) in run.json."""
        self.results.update(values)

    def add_cumulative_log(self, path: str | Path, level: str = "INFO", include_streams: bool = False) -> Path:
        """Also append this run's records to ``path`` (e.g. a log shared by every run of the stage).

        The sink is line-buffered like the session log and lives until the next
        :func:`start_run` in this process.

        Parameters
        ----------
        path : str or pathlib.Path
            Log file, relative to the project directory unless absolute.
        level : str
            Lowest level written.
        include_streams : bool
            Also write captured stdout/stderr lines.
        """
        dest = Path(path) if Path(path).is_absolute() else self.root / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        logger.add(str(dest), level=level, format=LOG_FORMAT, mode="a", buffering=1, encoding="utf-8",
                   filter=None if include_streams else (lambda r: "stream" not in r["extra"]), diagnose=False)
        return dest

    def worker_initargs(self) -> tuple[str, dict[str, str]]:
        """Arguments for :func:`quantnb.runlog.worker_initializer` in a ProcessPoolExecutor."""
        return (str(self.log_path), dict(self.params.third_party_levels))

    def finish(self, status: str | None = None, error: str | None = None) -> str:
        """End the run: final heartbeat, checkpoint status, run.json; return the status."""
        if self._closed:
            return self.status
        self._closed = True
        if status is None:
            status = "completed_with_errors" if self.checkpoint.failed else "completed"
        self.status = status
        ended = utc_now()
        self.checkpoint.save(status=status)
        self._heartbeat_write(force=True)
        self._emit_progress("")
        update_run_record(
            self.run_dir, status=status, ended_at=iso(ended),
            duration_s=round((ended - self.started_at).total_seconds(), 3), error=error,
            outputs=self.outputs, results=self.results,
            failed_items=self.checkpoint.failed, completed_items=len(self.checkpoint.completed),
        )
        level = "SUCCESS" if status == "completed" else "WARNING" if status != "failed" else "ERROR"
        logger.log(level, "Run {} ended: {} in {:.1f} s", self.run_id, status,
                   (ended - self.started_at).total_seconds())
        if status == "interrupted":
            logger.warning("Resume with resume=True, or: quantnb run {} --resume {}", self.stage, self.run_id)
        self.heartbeat_tsv.close()
        self.batch_tsv.close()
        return status

    def __enter__(self) -> RunContext:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if exc is None:
            self.finish()
        elif is_interrupt(exc):
            logger.warning("Run {} interrupted: {}", self.run_id, exc or type(exc).__name__)
            self.finish("interrupted", error=f"{type(exc).__name__}: {exc}")
        else:
            logger.opt(exception=(exc_type, exc, tb)).error(
                "Run {} failed: {}: {}", self.run_id, type(exc).__name__, exc
            )
            self.finish("failed", error=f"{type(exc).__name__}: {exc}")
        return False


def start_run(params: StageParams, *, root: str | os.PathLike[str] | None = None) -> RunContext:
    """Start a run of ``params.stage``: configure every log sink once, open heartbeats and checkpoint.

    This is the one place quantnb configures logging, whether the run was launched by
    ``quantnb run``, by the ``papermill`` CLI or by a person in JupyterLab; calling it again
    in the same process (re-running a notebook) replaces the previous configuration.

    The session log ``logs/<stage>/<run_id>.log`` receives, at DEBUG and up: loguru
    records, stdlib ``logging`` records (third-party at WARNING unless
    ``params.third_party_levels`` says otherwise), stdout and stderr line by line,
    ``warnings.warn``, uncaught exceptions with their traceback (also failing notebook
    cells) and records of worker processes started with :func:`worker_initializer`. It is
    line-buffered, so every line whose logging call returned survives a ``kill -9``;
    rotated at ``rotation_mb`` into zip files kept ``retention_days``. Secrets (values of
    environment variables named like KEY, SECRET, TOKEN, PASSWORD) are masked in every sink.

    Parameters
    ----------
    params : StageParams
        The stage's validated parameters; ``resume`` and ``run_id`` select the run.
    root : str or os.PathLike, optional
        Project directory; ``params.project_dir`` or the one found from the cwd otherwise.

    Returns
    -------
    RunContext
        Use it as a context manager around the stage's work.

    Raises
    ------
    ConfigError
        If ``params.run_id`` names a run that does not exist or had other parameters.
    """
    base = project_root(root if root is not None else params.project_dir)
    if params.run_id:
        run_id = params.run_id
        rec = read_run_record(base / "runs" / run_id)
        if rec is None:
            raise ConfigError(f"run_id={run_id!r}: no runs/{run_id}/run.json under {base}; "
                              "pass an existing run id or leave run_id unset for a new run")
        if rec.get("config_hash") not in (None, params.config_hash()):
            raise ConfigError(f"run_id={run_id!r} was started with other parameters "
                              f"(config {rec.get('config_hash')} vs {params.config_hash()}); "
                              "resume with the same parameters or start a new run")
        resumed = rec.get("status") != "pending"  # "pending": created by the runner, not started
    elif params.resume:
        found = _find_resumable(base, params.stage, params.config_hash())
        run_id, resumed = (found, True) if found else (new_run_id(params, base), False)
    else:
        run_id, resumed = new_run_id(params, base), False
    ctx = RunContext(params, base, run_id, resumed)
    ctx._open()
    if params.resume and not resumed:
        logger.info("resume=True but no unfinished run with these parameters: starting fresh")
    return ctx


def worker_initializer(log_path: str, third_party_levels: dict[str, str]) -> None:
    """ProcessPoolExecutor initializer: route the worker's logs into the session log.

    Use as ``ProcessPoolExecutor(n, initializer=worker_initializer, initargs=ctx.worker_initargs())``.
    """
    configure_worker(log_path, third_party_levels)
