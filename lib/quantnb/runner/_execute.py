from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import papermill
import psutil
from loguru import logger
from papermill.exceptions import PapermillExecutionError

from quantnb._paths import project_root
from quantnb.config import StageParams, load_yaml_params
from quantnb.display import HEADLESS_ENV
from quantnb.errors import ConfigError
from quantnb.runner._papermill_io import install as install_masking_io
from quantnb.runner._watch import HeartbeatProgress, ipc_kernel_manager_class
from quantnb.runs import (
    RunPaths,
    SecretMasker,
    atomic_path,
    check_run_dir,
    git_commit,
    iso,
    mark_dead_runs,
    new_run_id,
    package_versions,
    read_heartbeat,
    read_run_record,
    refuse_live_run,
    remove_stale_temp_files,
    update_run_record,
    utc_now,
)
from quantnb.stages import params_class

EXIT_CODES = {"completed": 0, "completed_with_errors": 0, "failed": 1, "interrupted": 130}
_KILL_GRACE_S = 30.0


@dataclasses.dataclass
class RunOutcome:
    """What one ``quantnb run`` produced; ``exit_code``: 0 completed, 1 failed, 130/143 interrupted."""

    run_id: str
    stage: str
    status: str
    notebook: Path
    record: dict[str, Any]
    exit_code: int


def resolve_params(
    stage: str,
    *,
    overrides: dict[str, Any] | None = None,
    params_file: str | Path | None = None,
    resume_run_id: str | None = None,
    root: Path,
    source: str | None = None,
) -> tuple[StageParams, dict[str, Any]]:
    """Merge a resumed run's parameters, a YAML file and overrides; ConfigError before any work."""
    cls = params_class(stage)
    values: dict[str, Any] = {}
    rec: dict[str, Any] | None = None
    if resume_run_id:
        rec = read_run_record(check_run_dir(root, resume_run_id))
        if rec is None:
            raise ConfigError(f"--resume {resume_run_id}: no runs/{resume_run_id}/run.json under {root}")
        if rec.get("stage") != stage:
            raise ConfigError(f"--resume {resume_run_id}: that run is stage {rec.get('stage')!r}, not {stage!r}")
        refuse_live_run(f"--resume {resume_run_id}", rec)
        # only what differs from the default is injected: a default the notebook's parameters cell does not
        # list (e.g. third_party_levels={}, from a default_factory) would make papermill warn about it
        fields = cls.model_fields
        values.update({k: v for k, v in rec.get("parameters", {}).items()
                       if k in fields and v != fields[k].get_default(call_default_factory=True)})
    if params_file:
        values.update(load_yaml_params(params_file))
    values.update(overrides or {})
    if resume_run_id:
        values.update(resume=True, run_id=resume_run_id)
    params = cls.parse(values, source=source or str(params_file or "command line"))
    if rec is not None and rec.get("config_hash") not in (None, params.config_hash()):
        changed = sorted(k for k, v in params.model_dump(mode="json").items()
                         if k not in params.execution_fields and rec.get("parameters", {}).get(k, v) != v)
        raise ConfigError(f"--resume {resume_run_id}: that run was started with other parameters "
                          f"({', '.join(changed) or 'config ' + str(rec.get('config_hash'))} differ); "
                          "resume it with its own parameters (no -p/-f), or start a new run without --resume")
    return params, values


def _kernel_processes() -> list[psutil.Process]:
    try:
        children = psutil.Process().children(recursive=False)
    except psutil.Error:
        return []
    return [c for c in children if "ipykernel" in " ".join(_cmdline(c))]


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


class _SignalRelay:
    """On SIGTERM/SIGINT: interrupt the kernel (papermill does not pass signals on); escalate."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._escalation: threading.Timer | None = None

    def __enter__(self) -> _SignalRelay:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._escalation is not None:  # the kernel stopped in time: no kill, and no 30 s wait to exit
            self._escalation.cancel()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.received is None
        self.received = signum
        kernels = _kernel_processes()
        if first:
            logger.warning("Received {}: interrupting the kernel", signal.Signals(signum).name)
            for k in kernels:
                k.send_signal(signal.SIGINT)
            self._escalation = threading.Timer(_KILL_GRACE_S, self._kill, args=(kernels,))
            self._escalation.daemon = True
            self._escalation.start()
        else:
            logger.warning("Second signal: killing the kernel")
            self._kill(kernels)

    @staticmethod
    def _kill(kernels: list[psutil.Process]) -> None:
        for k in kernels:
            if k.is_running():
                k.kill()


def _mask_notebook(path: Path) -> None:
    masker = SecretMasker()
    if not masker or not path.exists():
        return
    text = path.read_text(encoding="utf-8")
    masked = masker(text)
    if masked != text:
        with atomic_path(path) as tmp:
            tmp.write_text(masked, encoding="utf-8")


def _failure(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, PapermillExecutionError):
        return {"cell_index": exc.cell_index, "exec_count": exc.exec_count, "ename": exc.ename,
                "evalue": exc.evalue, "source": exc.source[:2000]}
    return {"ename": type(exc).__name__, "evalue": str(exc)}


def run_stage(
    stage: str,
    overrides: dict[str, Any] | None = None,
    *,
    params_file: str | Path | None = None,
    resume_run_id: str | None = None,
    root: str | Path | None = None,
    kernel_name: str = "python3",
    progress: bool | None = None,
    log_output: bool = False,
    source: str | None = None,
) -> RunOutcome:
    """Execute ``notebooks/<stage>.ipynb`` into ``runs/<run_id>/`` and record the run (``quantnb run``)."""
    # A failing cell still leaves the executed notebook and run.json (failed); a signal interrupts
    # the kernel (the stage marks itself interrupted), a second one kills it.
    base = project_root(root)
    mark_dead_runs(base)  # runs whose processes died (SIGKILL) become interrupted in their run.json
    params, values = resolve_params(stage, overrides=overrides, params_file=params_file,
                                    resume_run_id=resume_run_id, root=base, source=source)
    notebook_in = base / "notebooks" / f"{stage}.ipynb"
    if not notebook_in.exists():
        raise ConfigError(f"{notebook_in}: notebook of stage {stage!r} not found")
    run_id = resume_run_id or new_run_id(params, base)
    check_run_dir(base, run_id)  # a link in runs/ pointing elsewhere is not written through
    paths = RunPaths(base, run_id, stage)
    run_dir = paths.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    notebook_out = paths.notebook
    if resume_run_id and notebook_out.exists():
        attempt = len(list(run_dir.glob(f"{stage}.attempt*.ipynb"))) + 1
        notebook_out.rename(run_dir / f"{stage}.attempt{attempt}.ipynb")
    if resume_run_id:
        remove_stale_temp_files(paths)
    me = psutil.Process()
    runner = {"runner_pid": os.getpid(), "runner_pid_create_time": me.create_time()}
    if not resume_run_id:
        update_run_record(run_dir, run_id=run_id, stage=stage, status="pending",
                          config_hash=params.config_hash(), parameters=params.model_dump(mode="json"),
                          started_at=iso(utc_now()), git_commit=git_commit(base),
                          versions=package_versions(), **runner)
    # YAML dates (start: 2024-07-01) reach the notebook as ISO strings; papermill stores the parameters as JSON
    inject = {**json.loads(json.dumps(values, default=str)), "run_id": run_id, "project_dir": str(base)}
    update_run_record(run_dir, notebook=str(notebook_out.relative_to(base)), **runner)
    print(f"[quantnb] {stage}: run {run_id} -> {notebook_out.relative_to(base)}", flush=True)
    t0 = time.monotonic()
    error: dict[str, Any] | None = None
    install_masking_io()  # the notebooks papermill saves while cells run carry no secret either
    show = False if (log_output or progress is False) else (True if progress else sys.stderr.isatty())
    streams = {"stdout_file": sys.stdout, "stderr_file": sys.stderr} if log_output else {}
    previous_headless = os.environ.get(HEADLESS_ENV)
    os.environ[HEADLESS_ENV] = "1"  # the kernel inherits it: progress lines in the log, no widget state
    with _SignalRelay() as relay, HeartbeatProgress(paths.heartbeat_json, stage, disable=not show):
        try:
            papermill.execute_notebook(
                str(notebook_in), str(notebook_out), parameters=inject, kernel_name=kernel_name,
                cwd=str(base), progress_bar=False, log_output=False, request_save_on_cell_execute=True,
                kernel_manager_class=ipc_kernel_manager_class(), **streams,
            )
        except Exception as exc:  # the notebook is saved; we classify the failure below
            error = _failure(exc)
        finally:
            if previous_headless is None:
                os.environ.pop(HEADLESS_ENV, None)
            else:
                os.environ[HEADLESS_ENV] = previous_headless
    _mask_notebook(notebook_out)
    record = read_run_record(run_dir, detect_dead=False) or {}
    status = record.get("status", "failed")
    signal_fields: dict[str, Any] = {}
    if relay.received is not None:
        status = "interrupted"
        name = signal.Signals(relay.received).name  # the kernel saw the SIGINT we relayed: record the real one
        signal_fields = {"signal": name, "error": str(record.get("error") or f"stopped by {name}").replace(
            "SIGINT", name)}
    elif status in ("running", "pending"):
        hb = read_heartbeat(paths.heartbeat_json)
        status = "failed" if error else (hb or {}).get("status", "completed")
        if status == "running":
            status = "failed"
    elif error and status in ("completed", "completed_with_errors"):
        status = "failed"  # the stage finished but a later cell (display) failed
    record = update_run_record(
        run_dir, status=status, failure=error, runner_duration_s=round(time.monotonic() - t0, 3),
        runner_ended_at=iso(utc_now()), **signal_fields,
    )
    code = EXIT_CODES.get(status, 1)
    if status == "interrupted" and relay.received == signal.SIGTERM:
        code = 143
    return RunOutcome(run_id, stage, status, notebook_out, record, code)
