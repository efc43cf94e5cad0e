"""A SIGKILLed run is marked interrupted in run.json by every command that reads runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from quantnb.config import StageParams
from quantnb.runs import analyse_run, list_runs, read_run_record, start_run
from tests.conftest import run_cli

SLEEPER = Path(__file__).with_name("_sleeper.py")


class SleeperParams(StageParams):
    stage = "sleeper"


def _killed_run(root: Path) -> str:
    proc = subprocess.Popen([sys.executable, str(SLEEPER), str(root)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY"), (line, proc.stderr.read() if proc.poll() is not None else "")
        run_id = line.split()[1]
        rec = json.loads((root / "runs" / run_id / "run.json").read_text())
        assert rec["status"] == "running" and rec["pid"] == proc.pid and rec["pid_create_time"] > 0
        assert read_run_record(root / "runs" / run_id)["status"] == "running"  # alive: untouched
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    return run_id


def _on_disk(root: Path, run_id: str) -> dict:
    return json.loads((root / "runs" / run_id / "run.json").read_text())


def test_quantnb_runs_marks_a_killed_run_interrupted_and_lists_every_status(tmp_path):
    root = tmp_path / "proj"
    killed = _killed_run(root)
    assert _on_disk(root, killed)["status"] == "running"  # nothing has read it yet
    with start_run(SleeperParams(project_dir=str(root), console_level=None, retention_days=2)) as ctx:
        ctx.set_total(3)
        for i in range(3):
            ctx.item_done(f"i{i}")
        ctx.record_metrics(files=3, bars=42, quarantined=0)
    completed = ctx.run_id
    with pytest.raises(RuntimeError):
        with start_run(SleeperParams(project_dir=str(root), console_level=None, retention_days=3)) as ctx:
            raise RuntimeError("boom")
    failed = ctx.run_id
    res = run_cli("runs", "--root", str(root), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rec = _on_disk(root, killed)
    assert rec["status"] == "interrupted" and rec["interrupted_detected_at"].endswith("Z")
    assert "dead" in rec["interrupted_reason"]
    lines = {ln.split()[0]: ln for ln in res.stdout.splitlines()[2:]}
    assert " interrupted " in lines[killed] and "2/10" in lines[killed] and "files=2" in lines[killed]
    assert " completed " in lines[completed] and "3/3 100%" in lines[completed]
    assert "files=3 bars=42 quarantined=0" in lines[completed]
    assert " failed " in lines[failed] and "RuntimeError: boom" in lines[failed]
    assert f"logs/sleeper/{completed}.log" in lines[completed]
    only = run_cli("runs", "--root", str(root), "--status", "interrupted", cwd=tmp_path)
    assert killed in only.stdout and completed not in only.stdout and failed not in only.stdout
    summaries = {s.run_id: s for s in list_runs(root, stage="sleeper")}
    assert summaries[killed].status == "interrupted" and summaries[killed].eta_s is None
    assert summaries[completed].metrics == {"files": 3, "bars": 42, "quarantined": 0}


def test_post_mortem_marks_a_killed_run_interrupted(tmp_path):
    root = tmp_path / "proj"
    killed = _killed_run(root)
    report = analyse_run(root, killed)
    assert report.status == "interrupted"
    rec = _on_disk(root, killed)
    assert rec["status"] == "interrupted" and rec["interrupted_detected_at"]


def test_resume_marks_a_killed_run_interrupted_then_continues_it(tmp_path):
    root = tmp_path / "proj"
    killed = _killed_run(root)
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout.strip()
    stale = [root / "runs" / killed / f".model.pt.{dead_pid}.x1y2.tmp",  # writers killed mid-write
             root / "data" / "processed" / "BTC" / f".2024-01-01.parquet.{dead_pid}.abcd.tmp",
             root / "logs" / "checkpoints" / f".{killed}_completed.json.{dead_pid}.q.tmp"]
    live = root / "data" / "processed" / "BTC" / f".other.parquet.{os.getpid()}.zz.tmp"  # a live writer's
    for path in [*stale, live]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    with start_run(SleeperParams(project_dir=str(root), console_level=None, resume=True)) as ctx:
        assert ctx.run_id == killed and ctx.resumed
        assert _on_disk(root, killed)["interrupted_detected_at"]  # detected before it resumed
        for i in range(2, 10):
            ctx.checkpoint.mark_completed(f"item{i}")
    rec = _on_disk(root, killed)
    assert rec["status"] == "completed" and rec["interrupted_detected_at"]
    assert not any(p.exists() for p in stale) and live.exists()
    left = [p for p in root.rglob("*.tmp") if p != live]
    assert not left, left


def test_a_reused_pid_does_not_keep_a_dead_run_alive(tmp_path):
    root = tmp_path / "proj"
    killed = _killed_run(root)
    rec_path = root / "runs" / killed / "run.json"
    rec = json.loads(rec_path.read_text())
    rec["pid"] = os.getpid()  # a live process, but not the one that started the run
    rec_path.write_text(json.dumps(rec))
    assert read_run_record(root / "runs" / killed)["status"] == "interrupted"


def test_quantnb_run_and_pipeline_mark_dead_runs_first(tmp_path):
    from quantnb.runs import mark_dead_runs

    root = tmp_path / "proj"
    killed = _killed_run(root)
    assert mark_dead_runs(root) == [killed]  # what `quantnb run` and `quantnb pipeline` call first
    assert _on_disk(root, killed)["status"] == "interrupted"
    assert mark_dead_runs(root) == []
