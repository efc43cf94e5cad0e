from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import nbformat
import polars as pl
import pytest

from quantnb.data import shard_stem
from tests.conftest import QUANTNB, run_cli
from tests.stages.test_etl_stage import _outputs, _raw_inputs, _wait_for


def _start(root: Path, *args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([QUANTNB, *args], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_id = proc.stdout.readline().split(" run ")[1].split()[0]
    return proc, run_id


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_to_runner_interrupts_the_kernel_and_resume_completes(project, signum):
    _raw_inputs(project)
    proc, run_id = _start(project, "run", "etl", "-p", "input_globs", '["data/raw/*"]', "-p", "n_workers", "1")
    ckpt_path = project / "logs" / "checkpoints" / f"{run_id}_completed.json"
    assert _wait_for(ckpt_path, proc)
    deadline = time.monotonic() + 60  # wait for the first finished file, then signal mid-run
    while time.monotonic() < deadline and not json.loads(ckpt_path.read_text())["completed"]:
        time.sleep(0.05)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == (143 if signum == signal.SIGTERM else 130), out + err
    record = json.loads((project / "runs" / run_id / "run.json").read_text())
    assert record["status"] == "interrupted"
    ckpt = json.loads(ckpt_path.read_text())
    if ckpt["status"] != "interrupted":  # the kernel never wrote the run's end: say where it stopped (CI flake)
        log = project / "logs" / "etl" / f"{run_id}.log"
        tail = log.read_text()[-3000:] if log.exists() else "(no session log)"
        pytest.fail(f"checkpoint {ckpt['status']!r}, run.json {record['status']!r}; runner stderr:\n{err[-2000:]}"
                    f"\nsession log tail:\n{tail}")
    assert 1 <= len(ckpt["completed"]) < 8
    for item in ckpt["completed"]:  # consistent: every committed item has its shard on disk, whole
        pl.read_parquet(project / "runs" / run_id / "parts" / f"{shard_stem(item)}.parquet")
    nb = nbformat.read(project / "runs" / run_id / "etl.ipynb", as_version=4)
    assert any(o.get("ename") == "KeyboardInterrupt" for c in nb.cells for o in c.get("outputs", []))
    log = (project / "logs" / "etl" / f"{run_id}.log").read_text()
    assert "interrupted" in log and f"--resume {run_id}" in log
    if signum != signal.SIGTERM:
        return  # the resume of an interrupted run is one path whatever the signal: run once (SIGTERM)
    done = run_cli("run", "etl", "--resume", run_id, cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Resume: skipping" in (project / "logs" / "etl" / f"{run_id}.log").read_text()
    assert _outputs(project, "data/processed")


@pytest.mark.slow
def test_sigterm_stops_a_live_session_in_order_and_records_its_statistics(agent_project):
    root, train_id = agent_project
    proc, run_id = _start(root, "run", "live", "-p", "train_id", train_id, "-p", "replay_speed", "3000")
    registro_dir = root / "runs" / train_id / "produccion"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(
            len(p.read_text().splitlines()) > 5 for p in registro_dir.glob("registro_*.csv")):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, out + err
    record = json.loads((root / "runs" / run_id / "run.json").read_text())
    assert record["status"] == "interrupted"
    results = record["results"]
    assert results["stopped_by"] not in ("end_of_data", "") and results["steps"] >= 5
    assert results["flattened_on_stop"] is True
    for key in ("trades", "pnl_usd", "fees_usd", "max_drawdown_frac"):
        assert key in results
    (registro,) = registro_dir.glob("registro_*.csv")
    events = [line.split(",")[16] for line in registro.read_text().splitlines()[1:]]  # the "event" column
    assert events.count("bar") == results["steps"] and set(events) <= {"bar", "stop_flatten"}


@pytest.mark.slow
def test_sigkill_of_the_whole_tree_is_recorded_interrupted_then_resumed(project):
    import psutil

    _raw_inputs(project)
    proc, run_id = _start(project, "run", "etl", "-p", "input_globs", '["data/raw/*"]', "-p", "n_workers", "1")
    ckpt_path = project / "logs" / "checkpoints" / f"{run_id}_completed.json"
    assert _wait_for(ckpt_path, proc)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not json.loads(ckpt_path.read_text())["completed"]:
        time.sleep(0.05)
    tree = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
    for pid in tree:  # runner, kernel and workers: nobody writes an end
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            pass
    proc.communicate(timeout=60)
    record_path = project / "runs" / run_id / "run.json"
    assert json.loads(record_path.read_text())["status"] == "running"
    listed = run_cli("runs", "--stage", "etl", cwd=project)
    assert listed.returncode == 0 and " interrupted " in listed.stdout, listed.stdout + listed.stderr
    record = json.loads(record_path.read_text())
    assert record["status"] == "interrupted" and record["interrupted_detected_at"]
    done = run_cli("run", "etl", "--resume", run_id, cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads(record_path.read_text())
    assert record["status"] == "completed" and record["interrupted_detected_at"]
    assert not list(project.rglob("*.tmp"))
    assert _outputs(project, "data/processed")
