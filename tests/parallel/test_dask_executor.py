"""ETL and labelling as Dask tasks: same Parquet as the local process pool, same faults, same resume.

Outputs are compared byte for byte (every ``*.parquet`` under the output directory, whatever
its layout). The LocalCluster each run starts has two worker processes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import polars as pl
import psutil
import pytest

from quantnb.errors import ConfigError
from quantnb.stages.etl import EtlParams, run_etl
from quantnb.stages.labelling import LabellingParams, run_labelling
from tests.conftest import PYTHON, QUANTNB, SAMPLES, run_cli

WORKER_TAG = "dask-worker@"  # process name of records forwarded from Dask workers


def _parquet_bytes(base: Path) -> dict[str, bytes]:
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*.parquet"))}


def _raw_inputs(root: Path, n_copies: int, bad: bool = True) -> None:
    """``n_copies`` of the Binance capture under distinct names, and one unreadable file."""
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    for i in range(n_copies):
        shutil.copy(SAMPLES / "binance_usdm" / "BTCUSDT_20240808.gz", raw / f"BTCUSDT_202408{10 + i}.gz")
    if bad:
        (raw / "BTCUSDT_20240801.gz").write_bytes(b"\x1f\x8b\x08\x00not really gzip")


def _etl(root: Path, executor: str, out: str) -> object:
    return run_etl(EtlParams(input_globs=["data/raw/*"], output_dir=out, n_workers=2, executor=executor,
                             project_dir=str(root), console_level=None))


def test_etl_on_dask_writes_the_local_parquet_quarantines_alike_and_logs_worker_records(project):
    _raw_inputs(project, n_copies=3)
    local = _etl(project, "local", "data/local")
    dask = _etl(project, "dask", "data/dask")
    assert local.status == dask.status == "completed_with_errors"
    assert list(dask.quarantined) == list(local.quarantined) == ["data/raw/BTCUSDT_20240801.gz"]
    assert dask.quarantined == local.quarantined
    ref = _parquet_bytes(project / "data" / "local")
    assert ref and _parquet_bytes(project / "data" / "dask") == ref
    log = (project / "logs" / "etl" / f"{dask.run_id}.log").read_text()
    worker_lines = [ln for ln in log.splitlines() if WORKER_TAG in ln]
    for i in range(3):  # each file's own worker-side summary line, with the worker's module and line
        assert any(f"BTCUSDT_202408{10 + i}.gz: 93953 messages processed" in ln and "quantnb.data._ingest:" in ln
                   for ln in worker_lines), f"worker record of file {i} missing from the session log"
    checkpoint = json.loads((project / "logs" / "checkpoints" / f"{dask.run_id}_completed.json").read_text())
    assert sorted(checkpoint["completed"]) == [f"data/raw/BTCUSDT_202408{10 + i}.gz" for i in range(3)]


def _daily_bars(root: Path, folder: str = "data/processed/BTC-PERP") -> None:
    """Three UTC days of real 1-minute bars as ETL-like Parquet, and one file without a close column."""
    csv = SAMPLES / "ohlcv" / "BTC-PERP_20211231_20220201_1m.csv"
    bars = (pl.read_csv(csv, n_rows=1440 * 3)
            .with_columns(pl.col("timestamp").str.to_datetime(time_zone="UTC").dt.cast_time_unit("us").alias("ts"))
            .drop("timestamp").with_columns(pl.lit(False).alias("gap_before")))
    out = root / folder
    out.mkdir(parents=True, exist_ok=True)
    for (day,), frame in bars.group_by(pl.col("ts").dt.date(), maintain_order=True):
        frame.write_parquet(out / f"{day}.parquet")
    bars.head(10).drop("close").write_parquet(out / "0000_no_close.parquet")  # sorts first: nobody's future


def test_labelling_on_dask_writes_the_local_parquet_and_quarantines_alike(project):
    _daily_bars(project)
    common = {"input_glob": "data/processed/BTC-PERP/*.parquet", "lookahead_min": 30, "n_workers": 2,
              "project_dir": str(project), "console_level": None}
    local = run_labelling(LabellingParams(output_root="data/lab_local", **common))
    dask = run_labelling(LabellingParams(output_root="data/lab_dask", executor="dask", **common))
    assert local.status == dask.status == "completed_with_errors"
    assert list(dask.quarantined) == list(local.quarantined) == ["data/processed/BTC-PERP/0000_no_close.parquet"]
    ref = _parquet_bytes(local.output_dir)
    assert len(ref) >= 3 and _parquet_bytes(dask.output_dir) == ref
    assert dask.distribution.equals(local.distribution)


def test_unreachable_scheduler_is_a_config_error_naming_the_fix(project, monkeypatch):
    monkeypatch.setattr("quantnb.parallel._dask._CONNECT_TIMEOUT_S", 2)
    _raw_inputs(project, n_copies=1, bad=False)
    with pytest.raises(ConfigError, match="scheduler='tcp://127.0.0.1:9'.*dask scheduler"):
        run_etl(EtlParams(input_globs=["data/raw/*"], executor="dask", scheduler="tcp://127.0.0.1:9",
                          project_dir=str(project), console_level=None))
    with pytest.raises(ConfigError, match="scheduler='tcp://x:1' is only used with executor='dask'"):
        EtlParams.parse({"scheduler": "tcp://x:1"})


def test_the_runs_local_cluster_uses_quantnbs_dask_settings_not_dasks_defaults():
    """The settings measured to cost ~20 % of a file's CPU (MALLOC_TRIM_THRESHOLD_, the profiler) are off."""
    import dask

    from quantnb.parallel import DASK_CONFIG_FILE
    from quantnb.parallel._dask import DaskExecutor

    assert dask.config.get("distributed.nanny.pre-spawn-environ")["MALLOC_TRIM_THRESHOLD_"] == 65536  # Dask's own
    ex = DaskExecutor(n_workers=1, scheduler=None, run_id="settings")
    try:
        ex.submit("trim", os.getenv, "MALLOC_TRIM_THRESHOLD_", "unset")
        ex.submit("profile", dask.config.get, "distributed.worker.profile.enabled")
        ex.submit("omp", os.getenv, "OMP_NUM_THREADS")  # the other pre-spawn settings stay
        got = {c.key: c.result() for c in ex.as_completed()}
    finally:
        ex.close(wait=True)
    assert got == {"trim": "unset", "profile": False, "omp": "1"}
    assert dask.config.get("distributed.worker.profile.enabled") is True  # the driver's config is untouched
    assert "MALLOC_TRIM_THRESHOLD_: null" in DASK_CONFIG_FILE.read_text()



def _stop(procs: list[subprocess.Popen]) -> None:
    """Stop a test cluster: workers first, then the scheduler; each by its own pid (killed after 30 s)."""
    for p in reversed(procs):
        p.terminate()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()

@pytest.fixture
def dask_cluster(tmp_path):
    """A scheduler and two worker processes started the way the README says, on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    from quantnb.parallel import DASK_CONFIG_FILE

    env = {**os.environ, "POLARS_MAX_THREADS": "1", "DASK_CONFIG": str(DASK_CONFIG_FILE)}
    procs = [subprocess.Popen([PYTHON, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                               str(port), "--no-dashboard"], stdout=subprocess.DEVNULL,
                              stderr=open(tmp_path / "scheduler.log", "w"), env=env)]
    procs.append(subprocess.Popen([PYTHON, "-m", "distributed.cli.dask_worker", address, "--nworkers", "2",
                                   "--nthreads", "1", "--memory-limit", "0", "--no-dashboard"],
                                  stdout=subprocess.DEVNULL, stderr=open(tmp_path / "workers.log", "w"), env=env))
    try:
        from distributed import Client

        with Client(address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        _stop(procs)


@pytest.mark.slow
def test_etl_on_a_running_scheduler_writes_the_local_parquet_and_logs_worker_records(project, dask_cluster):
    _raw_inputs(project, n_copies=2)
    local = _etl(project, "local", "data/local")
    remote = run_etl(EtlParams(input_globs=["data/raw/*"], output_dir="data/remote", executor="dask",
                               scheduler=dask_cluster, project_dir=str(project), console_level=None))
    assert remote.quarantined == local.quarantined and len(remote.quarantined) == 1
    assert _parquet_bytes(project / "data" / "remote") == _parquet_bytes(project / "data" / "local")
    log = (project / "logs" / "etl" / f"{remote.run_id}.log").read_text()
    assert f"Dask: scheduler {dask_cluster} with 2 worker(s)" in log
    from distributed import Client

    with Client(dask_cluster, set_as_default=False) as client:  # DASK_CONFIG reached the workers
        assert set(client.run(os.getenv, "MALLOC_TRIM_THRESHOLD_", "unset").values()) == {"unset"}
    assert sum(1 for ln in log.splitlines() if WORKER_TAG in ln and "messages processed" in ln) == 2


# -- faults, through `quantnb run` (the driver is the notebook's kernel) -----------------------------------

def _start(root: Path, *args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([QUANTNB, "run", "etl", *args], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    first = proc.stdout.readline()  # "[quantnb] etl: run <id> -> ..."
    return proc, first.split(" run ")[1].split()[0]


def _wait_committed(root: Path, run_id: str, proc: subprocess.Popen, n: int, timeout_s: float = 180) -> int:
    path = root / "logs" / "checkpoints" / f"{run_id}_completed.json"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            done = len(json.loads(path.read_text())["completed"])
        except (OSError, ValueError, KeyError):
            done = 0
        if done >= n:
            return done
        time.sleep(0.02)
    pytest.fail(f"the run committed fewer than {n} file(s) (exit code {proc.poll()})")


def _cmdline(proc: psutil.Process) -> list[str]:
    """A child's command line; empty for one that exited meanwhile (a short-lived helper, a zombie)."""
    try:
        return proc.cmdline()
    except (psutil.ZombieProcess, psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _dask_workers(runner_pid: int) -> tuple[psutil.Process, list[psutil.Process]]:
    """The kernel under the runner, and its Dask worker processes (spawned children)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        kernels = psutil.Process(runner_pid).children()
        if kernels:
            workers = [c for c in kernels[0].children() if "spawn_main" in " ".join(_cmdline(c))]
            if len(workers) == 2:
                return kernels[0], workers
        time.sleep(0.05)
    pytest.fail("no kernel with two Dask worker processes under the runner")


def _reference(root: Path) -> dict[str, bytes]:
    ref = _etl(root, "local", "data/ref")
    assert ref.status == "completed", ref.quarantined
    return _parquet_bytes(root / "data" / "ref")


def _file_in_flight(log: Path, pid: int) -> str | None:
    """The input file worker ``pid`` has started and not finished, from its forwarded records."""
    started: list[str] = []
    finished: set[str] = set()
    for line in log.read_text().splitlines() if log.exists() else []:
        if f"{WORKER_TAG}" in line and f"/{pid}:" in line:
            message = line.split(" | ", 4)[-1]
            if ": reading as " in message:
                started.append(message.split(": reading as ")[0])
            elif " messages processed " in message:
                finished.add(message.split(": ")[0])
    return started[-1] if started and started[-1] not in finished else None


@pytest.mark.slow
def test_sigkill_of_one_dask_worker_mid_task_reruns_it_and_gives_the_same_parquet(project):
    _raw_inputs(project, n_copies=8, bad=False)
    reference = _reference(project)
    proc, run_id = _start(project, "-p", "input_globs", '["data/raw/*"]', "-p", "executor", "dask",
                          "-p", "output_dir", "data/out")
    log = project / "logs" / "etl" / f"{run_id}.log"
    try:
        _, workers = _dask_workers(proc.pid)
        victim, in_flight, deadline = None, None, time.monotonic() + 180
        while victim is None and time.monotonic() < deadline and proc.poll() is None:
            for w in workers:
                in_flight = _file_in_flight(log, w.pid)
                if in_flight:
                    victim = w
                    break
            time.sleep(0.01)
        assert victim is not None, "no worker was seen in the middle of a file"
        victim.send_signal(signal.SIGKILL)  # the nanny starts a new one; the scheduler reruns the task
        assert proc.wait(timeout=300) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    record = json.loads((project / "runs" / run_id / "run.json").read_text())
    assert record["status"] == "completed", record.get("failed_items")
    assert _parquet_bytes(project / "data" / "out") == reference
    text = log.read_text()
    assert "Restarting worker" in text
    assert any(f"{in_flight}: 93953 messages processed" in ln and f"/{victim.pid}:" not in ln
               for ln in text.splitlines() if WORKER_TAG in ln), f"{in_flight} was not rerun on another worker"


@pytest.mark.slow
def test_sigkill_of_the_driver_then_resume_skips_committed_files_and_gives_the_same_parquet(project):
    _raw_inputs(project, n_copies=8, bad=False)
    reference = _reference(project)
    proc, run_id = _start(project, "-p", "input_globs", '["data/raw/*"]', "-p", "executor", "dask",
                          "-p", "output_dir", "data/out")
    kernel, workers = _dask_workers(proc.pid)
    committed = _wait_committed(project, run_id, proc, 2)
    for p in (psutil.Process(proc.pid), kernel):  # the runner and the kernel; the cluster must follow
        p.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    _, alive = psutil.wait_procs(workers, timeout=60)
    for p in alive:
        p.kill()
    assert not alive, "Dask worker processes outlived the killed driver"
    checkpoint = json.loads((project / "logs" / "checkpoints" / f"{run_id}_completed.json").read_text())
    committed = len(checkpoint["completed"])
    assert committed < 8, "the kill landed after the last file: nothing left to resume"
    resumed = run_cli("run", "etl", "--resume", run_id, cwd=project, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    log = (project / "logs" / "etl" / f"{run_id}.log").read_text()
    assert f"Resume: skipping {committed} file(s)" in log
    assert _parquet_bytes(project / "data" / "out") == reference


def _can_unshare_mounts() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture
def blind_worker(project, tmp_path):
    """A scheduler and one real worker whose mount namespace hides the project's data/raw behind a tmpfs."""
    if not _can_unshare_mounts():
        pytest.skip("needs `unshare -m` (a private mount namespace) to give a worker another view of the disk")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    raw = project / "data" / "raw"
    raw.mkdir(parents=True)
    env = {**os.environ, "POLARS_MAX_THREADS": "1"}
    procs = [subprocess.Popen([PYTHON, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                               str(port), "--no-dashboard"], stdout=subprocess.DEVNULL,
                              stderr=open(tmp_path / "scheduler.log", "w"), env=env)]
    worker = (f"mount -t tmpfs -o size=1m quantnb-test '{raw}' && exec {PYTHON} -m distributed.cli.dask_worker "
              f"{address} --nworkers 1 --nthreads 1 --memory-limit 0 --no-dashboard --name blind-worker")
    procs.append(subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", worker],
                                  stdout=subprocess.DEVNULL, stderr=open(tmp_path / "worker.log", "w"), env=env))
    try:
        from distributed import Client

        with Client(address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(1, timeout=120)
            (worker_address,) = client.scheduler_info()["workers"]
        yield address, worker_address
    finally:
        _stop(procs)


@pytest.mark.slow
def test_a_worker_that_cannot_see_the_inputs_fails_the_run_naming_it_and_quarantines_nothing(project, blind_worker):
    from quantnb.parallel import ExecutorError

    scheduler, worker_address = blind_worker
    shutil.copy(SAMPLES / "binance_usdm" / "BTCUSDT_20240808.gz", project / "data" / "raw" / "BTCUSDT_20240810.gz")
    with pytest.raises(ExecutorError) as err:
        run_etl(EtlParams(input_globs=["data/raw/*"], output_dir="data/out", executor="dask", scheduler=scheduler,
                          project_dir=str(project), console_level=None))
    text = str(err.value)
    assert f"Dask worker {worker_address}" in text and "BTCUSDT_20240810.gz" in text and "cannot see" in text
    assert "Nothing was quarantined" in text
    (run_dir,) = (project / "runs").iterdir()
    rec = json.loads((run_dir / "run.json").read_text())
    assert rec["status"] == "failed" and worker_address in rec["error"]
    checkpoint = json.loads((project / "logs" / "checkpoints" / f"{run_dir.name}_completed.json").read_text())
    assert checkpoint["failed"] == {} and checkpoint["completed"] == []  # the file stays not done, not blamed


@pytest.mark.slow
def test_labelling_on_a_worker_that_cannot_see_its_inputs_fails_naming_it_and_quarantines_nothing(project,
                                                                                                 blind_worker):
    from quantnb.parallel import ExecutorError

    scheduler, worker_address = blind_worker
    _daily_bars(project, "data/raw")
    with pytest.raises(ExecutorError) as err:
        run_labelling(LabellingParams(input_glob="data/raw/*.parquet", lookahead_min=30, executor="dask",
                                      scheduler=scheduler, project_dir=str(project), console_level=None))
    text = str(err.value)
    assert f"Dask worker {worker_address}" in text and "cannot see the input" in text and "data/raw/" in text
    (run_dir,) = (project / "runs").iterdir()
    checkpoint = json.loads((project / "logs" / "checkpoints" / f"{run_dir.name}_completed.json").read_text())
    assert checkpoint["failed"] == {} and checkpoint["completed"] == []  # no file blamed for the worker's mounts
