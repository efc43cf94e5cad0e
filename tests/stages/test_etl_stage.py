from __future__ import annotations

import gzip
import json
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import psutil
import pytest

from quantnb.runs import read_heartbeat
from tests.conftest import QUANTNB, SAMPLES, run_cli


def _outputs(root: Path, out_dir: str) -> dict[str, pl.DataFrame]:
    base = root / out_dir
    return {str(p.relative_to(base)): pl.read_parquet(p) for p in sorted(base.rglob("*.parquet"))}


def _kill_tree(pid: int) -> None:
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def _raw_inputs(root: Path) -> None:
    """Eight items: six copies of the Binance capture (distinct names) and the two Bybit files."""
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    for i in range(6):
        shutil.copy(SAMPLES / "binance_usdm" / "BTCUSDT_20240808.gz", raw / f"BTCUSDT_2024081{i}.gz")
    for f in (SAMPLES / "bybit").iterdir():
        shutil.copy(f, raw / f.name)


def _wait_for(path: Path, proc: subprocess.Popen, timeout_s: float = 120) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists():
            return True
        time.sleep(0.02)
    return path.exists()


@pytest.mark.slow
def test_etl_killed_at_random_points_then_resumed_matches_uninterrupted_run(project):
    _raw_inputs(project)
    common = ["-p", "input_globs", '["data/raw/*"]', "-p", "n_workers", "2"]
    ref = run_cli("run", "etl", *common, "-p", "output_dir", "data/ref", cwd=project)
    assert ref.returncode == 0, ref.stdout + ref.stderr
    reference = _outputs(project, "data/ref")
    assert reference, "the uninterrupted run wrote no Parquet"

    rng = random.Random(7)
    run_id, kills, attempts, partial = None, 0, 0, []
    while kills < 3:
        attempts += 1
        assert attempts <= 10, f"only {kills} kill(s) landed while the run was working"
        args = ["run", "etl", *common, "-p", "output_dir", "data/out"] if run_id is None else \
            ["run", "etl", "--resume", run_id]
        proc = subprocess.Popen([QUANTNB, *args], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True)
        first = proc.stdout.readline()  # "[quantnb] etl: run <id> -> ..."
        run_id = run_id or first.split(" run ")[1].split()[0]
        heartbeat = project / "logs" / "heartbeats" / f"{run_id}_heartbeat.json"
        if kills == 0 and not _wait_for(heartbeat, proc):
            pytest.fail("the run never started")
        time.sleep(rng.uniform(0.0, 1.5))  # a seeded point: kernel start, workers, a file, the merge
        if proc.poll() is not None:  # finished first: that was no kill
            continue
        _kill_tree(proc.pid)
        proc.wait()
        kills += 1
        hb = read_heartbeat(heartbeat)
        assert hb is not None and hb["status"] in ("interrupted", "completed"), hb
        if hb["status"] == "interrupted":
            assert hb["pid_alive"] is False
        for p in (project / "data" / "out").rglob("*.parquet"):  # whatever is on disk is whole
            pl.read_parquet(p)
        ckpt_path = project / "logs" / "checkpoints" / f"{run_id}_completed.json"
        if ckpt_path.exists():
            partial.append(len(json.loads(ckpt_path.read_text())["completed"]))
    assert any(n < 8 for n in partial), f"no kill landed mid-run (completed items at each kill: {partial})"
    final = run_cli("run", "etl", "--resume", run_id, cwd=project)
    assert final.returncode == 0, final.stdout + final.stderr
    resumed = _outputs(project, "data/out")
    assert resumed.keys() == reference.keys()
    for name, frame in reference.items():
        assert resumed[name].equals(frame), name
    log_text = (project / "logs" / "etl" / f"{run_id}.log").read_text()
    assert log_text.count("Resuming run") >= 1 and "Starting run" in log_text
    record = json.loads((project / "runs" / run_id / "run.json").read_text())
    assert record["status"] == "completed"
    ckpt = json.loads((project / "logs" / "checkpoints" / f"{run_id}_completed.json").read_text())
    inputs = sorted(p.name for p in (project / "data" / "raw").iterdir())
    assert sorted(Path(c).name for c in ckpt["completed"]) == inputs


def _write_corrupt_inputs(raw: Path) -> dict[str, str]:
    raw.mkdir(parents=True)
    good_bybit = (SAMPLES / "bybit" / "2026-08-09_BTCUSDT_ob200.data").read_bytes()
    (raw / "2026-08-09_BTCUSDT_ob200.data").write_bytes(good_bybit)
    lines = good_bybit.splitlines(keepends=True)
    (raw / "2026-08-10_BTCUSDT_ob200.data").write_bytes(b"".join(lines[:50] + [b"{not json\n"] + lines[50:]))
    (raw / "2026-08-11_BTCUSDT_ob200.data.zip").write_bytes(b"PK\x03\x04 this is not a zip archive")
    (raw / "2026-08-12_BTCUSDT_ob200.data").write_bytes(b"".join(lines[5:]))  # deltas before any snapshot
    gz = (SAMPLES / "binance_usdm" / "BTCUSDT_20240808.gz").read_bytes()
    (raw / "BTCUSDT_20240809.gz").write_bytes(gz[: len(gz) // 3])  # truncated gzip
    with gzip.open(SAMPLES / "binance_usdm" / "BTCUSDT_20240808.gz", "rb") as fh:
        assert fh.read(10)
    return {
        "2026-08-10_BTCUSDT_ob200.data": "line 51",
        "2026-08-11_BTCUSDT_ob200.data.zip": "zip",
        "2026-08-12_BTCUSDT_ob200.data": "snapshot",
        "BTCUSDT_20240809.gz": "gzip",
    }


@pytest.mark.slow
def test_corrupt_files_are_quarantined_and_the_others_finish(project):
    expected = _write_corrupt_inputs(project / "data" / "raw")
    res = run_cli("run", "etl", "-p", "input_globs", '["data/raw/*"]', "-p", "output_dir", "data/q", cwd=project)
    assert res.returncode == 0, res.stdout + res.stderr
    (run_dir,) = [p for p in (project / "runs").iterdir() if p.name.startswith("etl_")]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed_with_errors"
    failed = {Path(k).name: v for k, v in record["failed_items"].items()}
    assert set(failed) == set(expected)
    for name, needle in expected.items():
        assert name in failed[name] and needle.lower() in failed[name].lower(), failed[name]
    ckpt = json.loads((project / "logs" / "checkpoints" / f"{run_dir.name}_completed.json").read_text())
    assert {Path(k).name for k in ckpt["failed"]} == set(expected)
    assert [Path(k).name for k in ckpt["completed"]] == ["2026-08-09_BTCUSDT_ob200.data"]
    out = pl.read_parquet(project / "data" / "q" / "bybit" / "linear" / "BTCUSDT" / "2026-08-09.parquet")
    assert out.height >= 1
    (quality_path,) = (project / "data" / "q" / "bybit" / "linear" / "BTCUSDT").glob(
        "2026-08-09_BTCUSDT_ob200.data-*.quality.json")
    quality = json.loads(quality_path.read_text())
    assert quality["messages"] == 414 and quality["seq_gaps"] == 0 and quality["crossed"] == 0
    log = (project / "logs" / "etl" / f"{run_dir.name}.log").read_text()
    assert log.count("| ERROR    |") >= len(expected)
