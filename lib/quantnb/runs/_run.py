"""start_run and RunContext: one run's identity, sinks, heartbeats, checkpoint and record."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import psutil
from loguru import logger

from quantnb._paths import project_root
from quantnb.config import StageParams
from quantnb.errors import ConfigError, RunInterrupted
from quantnb.runs._atomic import read_json_tolerant, remove_stale_temp_files
from quantnb.runs._capture import LOG_FORMAT, add_file_sink, configure_sinks, configure_worker, release_sinks
from quantnb.runs._checkpoint import Checkpoint
from quantnb.runs._heartbeat import (
    BATCH_COLUMNS,
    HEARTBEAT_COLUMNS,
    HeartbeatJson,
    TsvLog,
    iso,
    memory_gb,
    utc_now,
)
from quantnb.runs._held_signals import redeliver, signals_held
from quantnb.runs._interrupt import INTERRUPT_HOOKS, START_HOOKS, interrupt_reason
from quantnb.runs._layout import RunPaths, check_run_dir, record_files, run_dir, runs_dir
from quantnb.runs._progress import ProgressEvent, ProgressListener, global_listeners, notify, singular_unit
from quantnb.runs._record import (
    git_commit,
    live_run_pid,
    package_versions,
    read_run_record,
    refuse_live_run,
    update_run_record,
)

_TS_FORMAT = "%Y%m%d_%H%M%S"
BEAT_INTERVAL_S = 5.0
_STEP_MIN_INTERVAL_S = 0.2  # report_step: events sent on at most this often
_FLUSH_POLL_S = 0.25


def make_run_id(stage: str, suffix: str, started: dt.datetime) -> str:
    """Return ``<stage>_<suffix>_<YYYYMMDD_HHMMSS>`` (UTC), the suffix reduced to ``[A-Za-z0-9_.-]``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", suffix).strip("-.")[:64].strip("-.") or "none"
    return f"{stage}_{safe}_{started.astimezone(dt.UTC).strftime(_TS_FORMAT)}"


def new_run_id(params: StageParams, root: Path) -> str:
    """Derive a fresh run id for ``params`` and claim ``root/runs/<run_id>/`` for it.

    Parameters
    ----------
    params : StageParams
        Its ``stage`` and ``run_suffix()`` name the id (:func:`make_run_id`, started now).
    root : pathlib.Path
        Project directory.

    Returns
    -------
    str
        The id; ``-2``, ``-3``... appended when another run took it (the folder is created atomically).
    """
    # mkdir without exist_ok succeeds for one process only: two runs in the same second get two ids
    base = make_run_id(params.stage, params.run_suffix(), utc_now())
    runs_dir(root).mkdir(parents=True, exist_ok=True)
    run_id, n = base, 1
    while True:
        try:
            run_dir(root, run_id).mkdir()
            return run_id
        except FileExistsError:
            n += 1
            run_id = f"{base}-{n}"


def _find_resumable(root: Path, stage: str, config_hash: str) -> str | None:
    """Latest run of ``stage`` with the same config hash that did not complete."""
    candidates = []
    for rec_path in record_files(root, f"{stage}_*"):
        rec = read_run_record(rec_path.parent)
        if (rec and rec.get("config_hash") == config_hash and rec.get("status") != "completed"
                and live_run_pid(rec) is None):  # a run still going is not ours to join
            candidates.append((rec.get("started_at", ""), rec_path.parent.name))
    return max(candidates)[1] if candidates else None


def is_interrupt(exc: BaseException | None) -> bool:
    """Return whether ``exc`` is, or was caused by, an interrupt (SIGINT/SIGTERM, :class:`RunInterrupted`).

    A signal that arrives inside C code can surface as another exception (CPython raises
    ``SystemError: ... returned a result with an exception set``) with the
    ``KeyboardInterrupt`` chained as its context; code that catches ``Exception`` to
    quarantine one bad item must re-raise these instead.

    Parameters
    ----------
    exc : BaseException or None
        The exception caught; None gives False.
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
    ``interrupted``) whatever happens in the block. When it ends, the run's log capture
    ends too: later prints and log records do not reach its files.

    Progress: :meth:`set_total`, :meth:`item_done`, :meth:`beat` feed the heartbeat JSON
    (and a daemon thread beats every ``beat_interval_s``); displays subscribe with
    :meth:`add_progress_listener`.

    Parameters
    ----------
    params : StageParams
        The stage's validated parameters.
    root : Path
        Project directory.
    run_id : str
        ``<stage>_<suffix>_<YYYYMMDD_HHMMSS>``; its folder ``runs/<run_id>/`` exists.
    resumed : bool
        Whether the run continues an earlier attempt (its checkpoint is loaded).

    Attributes
    ----------
    paths : RunPaths
        Every file of the run; ``run_dir`` and ``log_path`` are its run folder and session log.
    metrics : dict
        Headline metrics recorded with :meth:`record_metrics` (run.json ``metrics``).
    checkpoint : Checkpoint
        Finished and failed items; ``resume`` skips the finished ones.
    """

    def __init__(self, params: StageParams, root: Path, run_id: str, resumed: bool):
        self.params = params
        self.stage = params.stage
        self.root = root
        self.run_id = run_id
        self.run_name = run_id
        self.resumed = resumed
        self.config_hash = params.config_hash()
        self.paths = RunPaths(root, run_id, self.stage)
        self.run_dir = self.paths.run_dir
        self.stage_log_dir = self.paths.stage_log_dir
        self.log_path = self.paths.session_log
        self.started_at = utc_now()
        self.status = "running"
        self.outputs: dict[str, str] = {}
        self.results: dict[str, Any] = {}
        self.metrics: dict[str, Any] = {}
        self.total_items: int | None = None
        self.total_batches: int | None = None
        self.events = 0
        self.beat_interval_s = BEAT_INTERVAL_S
        self._items_this_process = 0
        self._items_before = 0  # items reported by earlier attempts (resume)
        self._message = ""
        self._declared_total: int | None = None
        self._listeners: list[ProgressListener] = []
        self._step: dict[str, Any] | None = None  # progress inside the current item (report_step)
        self._previous_sigterm: Any = None  # put back when the run ends
        self._last_step_emit = 0.0
        self._t0 = time.monotonic()
        self._closed = False
        self._stop_beat = threading.Event()
        self._beat_thread: threading.Thread | None = None

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
        self.heartbeat_tsv = TsvLog(self.paths.daily_tsv("heartbeat", self.started_at), HEARTBEAT_COLUMNS)
        self.batch_tsv = TsvLog(self.paths.daily_tsv("batches", self.started_at), BATCH_COLUMNS)
        proc = psutil.Process()
        hb_path = self.paths.heartbeat_json
        if self.resumed:  # totals are known from the earlier attempt until set_total says otherwise
            previous = read_json_tolerant(hb_path) or {}
            self.total_items = previous.get("total_items")
            self.total_batches = previous.get("total_batches")
            self.events = int(previous.get("events") or 0)
            self._items_before = int(previous.get("items_done") or 0)
            self._declared_total = previous.get("declared_total_items")
            remove_stale_temp_files(self.paths, self.root / "data")
        self.heartbeat = HeartbeatJson(
            hb_path,
            {"run_id": self.run_id, "stage": self.stage, "pid": os.getpid(),
             "pid_create_time": proc.create_time(), "started_at": iso(self.started_at)},
        )
        self.checkpoint = Checkpoint(self.paths.checkpoint, self.run_id, self.config_hash, resume=self.resumed)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        update_run_record(
            self.run_dir, run_id=self.run_id, stage=self.stage, status="running",
            config_hash=self.config_hash, parameters=p.model_dump(mode="json"),
            started_at=self.run_dir_started_at(), resumed_at=iso(self.started_at) if self.resumed else None,
            pid=os.getpid(), pid_create_time=proc.create_time(),
            log=str(self.log_path.relative_to(self.root)),
            git_commit=git_commit(self.root), versions=package_versions(),
        )
        self._heartbeat_write(force=True, last_beat_at=iso(utc_now()))
        self._install_sigterm()
        for hook in START_HOOKS:  # quantnb.display's: a widget in JupyterLab, log lines otherwise
            hook(self)
        self._emit("start")
        self._beat_thread = threading.Thread(target=self._beat_loop, name=f"heartbeat-{self.run_id}",
                                             daemon=True)
        self._beat_thread.start()
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

        self._previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)

    def _signals_held(self) -> Any:
        """Hold SIGINT/SIGTERM while the run's end is written; SIGTERM then gets its handler of before the run."""
        previous, self._previous_sigterm = self._previous_sigterm, None
        return signals_held({signal.SIGTERM: previous} if previous is not None else None)

    # -- progress ------------------------------------------------------------------------
    def add_progress_listener(self, listener: ProgressListener) -> Callable[[], None]:
        """Call ``listener`` with a :class:`ProgressEvent` on every item, total, beat and at the end.

        The events carry the numbers the heartbeat JSON holds (done, total, rate, ETA,
        memory, last message). Item events come from the thread calling
        :meth:`item_done`; beats come from the heartbeat's daemon thread every
        ``beat_interval_s``. A failing listener is logged at DEBUG and never stops the run.

        Parameters
        ----------
        listener : callable
            Called with one :class:`~quantnb.runs._progress.ProgressEvent`.

        Returns
        -------
        callable
            Call it to remove the listener.
        """
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def set_total(self, total_items: int | None, total_batches: int | None = None) -> None:
        """Declare how many items (and batches) the run has in all, for progress and ETA.

        Call it again when the total changes, e.g. with the epoch training stopped at
        when early stopping ends it: the ETA and progress follow at once.

        Parameters
        ----------
        total_items : int or None
            Items in all; None for an open-ended run (live).
        total_batches : int, optional
            Shards in all.
        """
        self.total_items = total_items
        if self._declared_total is None:
            self._declared_total = total_items
        if total_batches is not None or total_items is None:
            self.total_batches = total_batches
        self._heartbeat_write(force=True)
        self._emit("total")

    def item_done(
        self,
        item: str,
        events: int = 0,
        batch_num: int | None = None,
        total_batches: int | None = None,
    ) -> None:
        """Record one finished item: a heartbeat TSV line, and the heartbeat JSON.

        The JSON is written at most once a second; an update held back by that throttle
        is written by the heartbeat thread within about a second, never dropped.

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
        self._message = item
        if total_batches is not None:
            self.total_batches = total_batches
        now, mem = utc_now(), memory_gb()
        self.heartbeat_tsv.append(
            iso(now), item, batch_num if batch_num is not None else "",
            self.total_batches if self.total_batches is not None else "",
            events, f"{mem:.3f}", self.run_id,
        )
        step: dict[str, Any] = {"step": None} if self._step is not None else {}
        self._step = None  # the next item's steps start afresh
        self._heartbeat_write(last_item=item, batch_num=batch_num, memory_gb=round(mem, 3), **step)
        self._emit("item", mem)

    def report_step(self, done: int, total: int | None, unit: str = "batches", context: str = "",
                    item_fraction: float | None = None) -> None:
        """Report progress inside the current item (batches of an epoch, epochs of a trial).

        For items that take minutes: displays show ``epoch 3/10 · batch 40/120`` and an ETA
        from the fraction done, and the heartbeat JSON's ``step`` says where the run is.
        At most one event every 0.2 s is sent on (the last step of an item always), so
        calling it after every batch costs little; :meth:`item_done` clears it.

        Parameters
        ----------
        done, total : int, int or None
            Steps finished in the current item, and in all (None while unknown).
        unit : str
            What a step is, plural (``batches``).
        context : str
            Where the steps are, e.g. ``trial 3 · epoch 2/5``.
        item_fraction : float, optional
            Fraction of the current item finished, in [0, 1]; ``done / total`` when None.
        """
        if item_fraction is None and total:
            item_fraction = done / total
        self._step = {"step_done": done, "step_total": total, "step_unit": unit, "context": context,
                      "item_fraction": None if item_fraction is None else min(max(float(item_fraction), 0.0), 1.0)}
        now = time.monotonic()
        if now - self._last_step_emit < _STEP_MIN_INTERVAL_S and not (total and done >= total):
            return
        self._last_step_emit = now
        where = " · ".join(p for p in (context, f"{singular_unit(unit)} {done}/{total or '?'}") if p)
        self._heartbeat_write(step=where)
        self._emit("step")

    def batch_saved(self, batch_num: int, items_count: int, total_events: int, shard_file: str | Path) -> None:
        """Record one shard durably written: a batch TSV line.

        Parameters
        ----------
        batch_num : int
            1-based number of the batch in this run.
        items_count : int
            Input items in the batch.
        total_events : int
            Rows or events the shard holds.
        shard_file : str or Path
            The shard written.
        """
        self.batch_tsv.append(
            iso(utc_now()), batch_num, items_count, total_events, str(shard_file),
            f"{memory_gb():.3f}", self.run_id,
        )
        self._heartbeat_write(batch_num=batch_num, force=True)

    def set_shard_retention(self, keep_last: int | None) -> None:
        """Declare that only the newest ``keep_last`` shards logged by :meth:`batch_saved` are kept.

        For rolling checkpoints that delete older ones by design: the post-mortem then
        reports the older shards as pruned, not missing. Recorded in run.json
        (``shard_retention``).

        Parameters
        ----------
        keep_last : int or None
            Shards kept; None means every shard must stay on disk (the default).
        """
        update_run_record(self.run_dir, shard_retention={"keep_last": keep_last})

    def beat(self, message: str | None = None) -> None:
        """Report liveness (and optionally a progress message) between items.

        The heartbeat thread already beats every ``beat_interval_s``; call this to show
        a message (e.g. SAC steps between checkpoints) without finishing an item.

        Parameters
        ----------
        message : str, optional
            Shown as the event's ``message`` and the heartbeat's ``message`` field.
        """
        if message is not None:
            self._message = message
        self._heartbeat_write(last_beat_at=iso(utc_now()), message=self._message)
        self._emit("beat")

    def record_metrics(self, **metrics: Any) -> None:
        """Record the run's headline metrics in ``run.json`` (``metrics``), now.

        Shown by ``quantnb runs``, :func:`quantnb.runs.list_runs` and the pipeline
        summary; call it with JSON-serialisable values as soon as they are known.

        Parameters
        ----------
        **metrics
            Name to value, e.g. ``files=12, bars=17280, quarantined=1``; merged with the
            metrics recorded before (a resumed run keeps the earlier attempt's).
        """
        self.metrics.update(metrics)
        update_run_record(self.run_dir, metrics=dict(self.metrics))

    def items_done(self) -> int:
        """Items finished (completed or failed) in this run, earlier attempts included."""
        ckpt = len(self.checkpoint.completed) + len(self.checkpoint.failed)
        return max(ckpt, self._items_before + self._items_this_process)

    def progress_pct(self) -> float | None:
        """Percent of items finished (completed or failed), or None without a total."""
        if not self.total_items:
            return None
        return min(100.0, 100.0 * self.items_done() / self.total_items)

    def _rate(self) -> float | None:
        if not self._items_this_process:
            return None
        return self._items_this_process / max(time.monotonic() - self._t0, 1e-9)

    def _eta_s(self) -> float | None:
        rate = self._rate()
        if not self.total_items or rate is None:
            return None
        if self.status != "running":
            return 0.0
        return max(self.total_items - self.items_done(), 0) / rate

    def _heartbeat_write(self, force: bool = False, **fields: Any) -> None:
        fields.setdefault("memory_gb", round(memory_gb(), 3))
        self.heartbeat.update(
            force=force, status=self.status, last_timestamp=iso(utc_now()),
            total_items=self.total_items, total_batches=self.total_batches,
            completed_items=len(self.checkpoint.completed), failed_items=len(self.checkpoint.failed),
            items_done=self.items_done(), declared_total_items=self._declared_total,
            progress_pct=self.progress_pct(), events=self.events,
            eta_s=self._eta_s(), **fields,
        )

    def _emit(self, kind: str, mem_gb: float | None = None) -> None:
        listeners = [*self._listeners, *global_listeners()]
        if not listeners:
            return
        rate = self._rate()
        event = ProgressEvent(
            run_id=self.run_id, stage=self.stage, kind=kind, done=self.items_done(), total=self.total_items,
            rate_per_s=rate, eta_s=self._eta_s(), rss_gb=round(mem_gb if mem_gb is not None else memory_gb(), 4),
            message=self._message, status=self.status, elapsed_s=round(time.monotonic() - self._t0, 3),
            events=self.events, **(self._step if self._step is not None and self.status == "running" else {}),
        )
        notify(listeners, event)

    def _beat_loop(self) -> None:
        next_beat = time.monotonic() + self.beat_interval_s
        while not self._stop_beat.wait(_FLUSH_POLL_S):
            try:
                self.heartbeat.flush()
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self.beat_interval_s
                    self._heartbeat_write(force=True, last_beat_at=iso(utc_now()))
                    self._emit("beat")
            except Exception as exc:  # a full disk must not kill the beat thread silently
                logger.debug("heartbeat beat failed: {}: {}", type(exc).__name__, exc)

    def _stop_beat_thread(self) -> None:
        self._stop_beat.set()
        if self._beat_thread is not None and self._beat_thread is not threading.current_thread():
            self._beat_thread.join(timeout=5)

    # -- outputs and end -------------------------------------------------------------------
    def add_output(self, name: str, path: str | Path) -> None:
        """Name an output of the run (recorded in run.json, shown by the pipeline summary).

        Parameters
        ----------
        name : str
            Output name (e.g. ``"bars"``).
        path : str or Path
            File or folder, stored relative to the project when inside it.
        """
        p = Path(path)
        self.outputs[name] = str(p.relative_to(self.root) if p.is_absolute() and p.is_relative_to(self.root) else p)

    def set_result(self, **values: Any) -> None:
        """Record summary values of the run (JSON-serialisable) in run.json.

        Parameters
        ----------
        **values : Any
            Result names to JSON-serialisable values; merged into run.json ``results``.
        """
        self.results.update(values)

    def add_cumulative_log(self, path: str | Path, level: str = "INFO", include_streams: bool = False) -> Path:
        """Also append this run's records to ``path`` (e.g. a log shared by every run of the stage).

        The sink is line-buffered like the session log and is removed when the run ends.

        Parameters
        ----------
        path : str or pathlib.Path
            Log file, relative to the project directory unless absolute.
        level : str
            Lowest level written.
        include_streams : bool
            Also write captured stdout/stderr lines.

        Returns
        -------
        pathlib.Path
            The log file (under the project directory when ``path`` is relative).
        """
        dest = Path(path) if Path(path).is_absolute() else self.root / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        sink_id = logger.add(str(dest), level=level, format=LOG_FORMAT, mode="a", buffering=1,
                             encoding="utf-8", diagnose=False,
                             filter=None if include_streams else (lambda r: "stream" not in r["extra"]))
        add_file_sink(self._sinks, sink_id)
        return dest

    def worker_initargs(self) -> tuple[str, dict[str, str]]:
        """Arguments for :func:`quantnb.runs.worker_initializer` in a ProcessPoolExecutor."""
        return (str(self.log_path), dict(self.params.third_party_levels))

    def finish(self, status: str | None = None, error: str | None = None) -> str:
        """End the run: final heartbeat, checkpoint status, run.json; return the status.

        The record is written whatever signal arrives meanwhile: SIGINT/SIGTERM are held
        until it is, then dropped if the run ended ``interrupted`` (a second Ctrl-C, or
        jupyter_client's interrupt before a kernel shutdown) and delivered otherwise.

        Parameters
        ----------
        status : str or None
            Final status; None gives ``completed``, or ``completed_with_errors`` when items failed.
        error : str or None
            The failure's reason, recorded in run.json.

        Returns
        -------
        str
            The final status (the first one if the run had already ended).
        """
        if self._closed:
            return self.status
        with self._signals_held() as late:
            status = self._finish(status, error)
        redeliver(late, status, self.run_id)
        return status

    def _finish(self, status: str | None, error: str | None, *, resume_hint_on_console: bool = True) -> str:
        """Write the run's end (see :meth:`finish`), signals already held by the caller."""
        if self._closed:
            return self.status
        self._closed = True
        if status is None:
            status = "completed_with_errors" if self.checkpoint.failed else "completed"
        self._stop_beat_thread()
        self.status = status
        ended = utc_now()
        self.checkpoint.save(status=status)
        self._heartbeat_write(force=True, last_beat_at=iso(ended))
        update_run_record(
            self.run_dir, status=status, ended_at=iso(ended),
            duration_s=round((ended - self.started_at).total_seconds(), 3), error=error,
            outputs=self.outputs, results=self.results, metrics=dict(self.metrics),
            items_done=self.items_done(), total_items=self.total_items,
            failed_items=self.checkpoint.failed, completed_items=len(self.checkpoint.completed),
        )
        level = "SUCCESS" if status == "completed" else "WARNING" if status != "failed" else "ERROR"
        logger.log(level, "Run {} ended: {} in {:.1f} s", self.run_id, status,
                   (ended - self.started_at).total_seconds())
        if status == "interrupted":  # in a notebook the one red line already says it: the log file keeps it
            logger.bind(console=resume_hint_on_console).warning(
                "Resume with resume=True, or: quantnb run {} --resume {}", self.stage, self.run_id)
        self.heartbeat_tsv.close()
        self.batch_tsv.close()
        self._emit("finish")
        release_sinks(self._sinks)  # later cells of the notebook no longer reach this run's files
        return status

    def __enter__(self) -> RunContext:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        with self._signals_held() as late:  # a late interrupt cannot stop the record half-written
            status = self._exit(exc_type, exc, tb)
        redeliver(late, status, self.run_id)
        return False

    def _exit(self, exc_type: type[BaseException] | None, exc: BaseException | None,
              tb: TracebackType | None) -> str:
        """Record how the ``with`` block ended; return the status."""
        if exc is None:
            return self._finish(None, None)
        if is_interrupt(exc):
            reason = interrupt_reason(exc, self._step, self._message)
            logger.bind(console=False).warning("Run {} interrupted: {}", self.run_id, reason)
            had_line = getattr(exc, "_render_traceback_", None) is not None  # an inner run's line
            for hook in INTERRUPT_HOOKS:  # quantnb.display's: one line in a notebook, not a traceback
                hook(exc, self, reason)
            ours = not had_line and getattr(exc, "_render_traceback_", None) is not None
            return self._finish("interrupted", reason, resume_hint_on_console=not ours)
        logger.opt(exception=(exc_type, exc, tb)).error(
            "Run {} failed: {}: {}", self.run_id, type(exc).__name__, exc
        )
        return self._finish("failed", f"{type(exc).__name__}: {exc}")


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

    Examples
    --------
    A stage commits each item to the checkpoint once its output is on disk, so a resumed run
    skips it:

    >>> from quantnb.config import StageParams
    >>> class CountParams(StageParams):
    ...     stage = "count"
    >>> with start_run(CountParams(project_dir=project, console_level=None)) as ctx:
    ...     ctx.set_total(2)
    ...     for item in ("a.csv", "b.csv"):
    ...         if not ctx.checkpoint.is_completed(item):
    ...             pass  # the work; its output written (atomically) before the next line
    ...             ctx.checkpoint.mark_completed(item)
    ...         ctx.item_done(item)
    ...     ctx.record_metrics(items=2)
    >>> ctx.status, ctx.run_id.startswith("count_")
    ('completed', True)
    """
    base = project_root(root if root is not None else params.project_dir)
    if params.run_id:
        run_id = params.run_id
        rec = read_run_record(run_dir(base, run_id))
        if rec is None:
            raise ConfigError(f"run_id={run_id!r}: no runs/{run_id}/run.json under {base}; "
                              "pass an existing run id or leave run_id unset for a new run")
        refuse_live_run(f"run_id={run_id!r}", rec, exclude=(os.getpid(), os.getppid()))  # not our own runner
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
    check_run_dir(base, run_id)  # a link in runs/ pointing elsewhere is not written through
    ctx = RunContext(params, base, run_id, resumed)
    ctx._open()
    if params.resume and not resumed:
        logger.info("resume=True but no unfinished run with these parameters: starting fresh")
    return ctx


def worker_initializer(log_path: str, third_party_levels: dict[str, str]) -> None:
    """ProcessPoolExecutor initializer: route the worker's logs into the session log.

    Use as ``ProcessPoolExecutor(n, initializer=worker_initializer, initargs=ctx.worker_initargs())``.

    Parameters
    ----------
    log_path : str
        The session log of the run.
    third_party_levels : dict of str to str
        Standard-library logger name to level, as for the parent process.
    """
    configure_worker(log_path, third_party_levels)
