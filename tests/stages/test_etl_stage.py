from __future__ import annotations

import gzip
import json
import random
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import psutil
import pytest

from quantnb.runlog import read_heartbeat
from tests.conftest import QUANTNB, SAMPLES, run_cli

FAST_INPUTS = '["data/samples/bybit/*.data*", "data/samples/trades/*.csv", "data/samples/binance_usdm/*.gz"]'


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


@pytest.mark.slow
def test_etl_killed_at_random_points_then_resumed_matches_uninterrupted_run(project):
    t0 = time.monotonic()
    ref = run_cli("run", "etl", "-p", "input_globs", FAST_INPUTS, "-p", "output_dir", "data/ref",
                  "-p", "n_workers", "2", cwd=project)
    assert ref.returncode == 0, ref.stdout + ref.stderr
    duration = time.monotonic() - t0
    reference = _outputs(project, "data/ref")
    assert reference, "the uninterrupted run wrote no Parquet"

    rng = random.Random(7)
    args = ["run", "etl", "-p", "input_globs", FAST_INPUTS, "-p", "output_dir", "data/out", "-p", "n_workers", "2"]
    run_id = None
    kills = 0
    while kills < 3:
        cmd = [QUANTNB, *(args if run_id is None else ["run", "etl", "--resume", run_id])]
        proc = subprocess.Popen(cmd, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        first = proc.stdout.readline()  # "[quantnb] etl: run <id> -> ..."
        run_id = run_id or first.split(" run ")[1].split()[0]
        time.sleep(rng.uniform(0.3, 0.9) * duration)
        if proc.poll() is not None:  # finished before the kill point: try an earlier one
            continue
        _kill_tree(proc.pid)
        kills += 1
        hb = read_heartbeat(project / "logs" / "heartbeats" / f"{run_id}_heartbeat.json")
        if hb is not None:  # the kernel may die before start_run wrote its first heartbeat
            assert hb["status"] in ("interrupted", "completed"), hb
            if hb["status"] == "interrupted":
                assert hb["pid_alive"] is False
        leftovers = list((project / "data" / "out").rglob("*.parquet"))
        for p in leftovers:  # whatever is on disk is whole: atomic writes
            pl.read_parquet(p)
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
    out = pl.read_parquet(project / "data" / "q" / "BTCUSDT" / "2026-08-09.parquet")
    assert out.height >= 1
    log = (project / "logs" / "etl" / f"{run_dir.name}.log").read_text()
    assert log.count("| ERROR    |") >= len(expected)
