from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from quantnb.runs import analyse_run, find_latest_run
from tests.conftest import make_project, run_cli

CHILD = Path(__file__).with_name("_dying_child.py")


def _dead_run(root: Path) -> str:
    res = subprocess.run([sys.executable, str(CHILD), str(root)], capture_output=True, timeout=60)
    assert res.returncode == 137, res.stderr.decode()
    return find_latest_run(root, "dying")


def test_postmortem_of_a_killed_run_reports_where_it_stopped(tmp_path):
    root = tmp_path / "proj"
    run_id = _dead_run(root)
    report = analyse_run(root, run_id)
    assert report.status == "interrupted" and not report.pid_alive  # heartbeat said running; pid is dead
    assert report.last_item == "item2" and report.last_batch_shard.endswith("item2.parquet")
    assert (report.items_done, report.items_failed, report.items_total, report.items_remaining) == (3, 0, 5, 2)
    assert [Path(s).name for s in report.shards_missing] == ["item1.parquet"]
    assert [Path(s).name for s in report.shards_orphaned] == [".item3.parquet.abc.tmp"]
    assert report.log_counts["ERROR"] == 1 and report.log_counts["WARNING"] == 1
    assert "simulated failure" in report.last_errors[-1]
    assert report.heartbeat.height == 3 and report.throughput["items"].sum() == 3
    assert {"min", "max", "mean"} <= set(report.memory_gb)
    text = report.summary()
    assert "INTERRUPTED" in text and "missing shard" in text and "orphaned file" in text


def test_postmortem_notebook_runs_on_a_killed_run(tmp_path):
    root = make_project(tmp_path / "proj")
    run_id = _dead_run(root)
    res = run_cli("run", "postmortem", "-p", "target_run_id", run_id, cwd=root)
    assert res.returncode == 0, res.stdout + res.stderr
    (pm_dir,) = (root / "runs").glob("postmortem_*")
    report = json.loads((pm_dir / "postmortem.json").read_text())
    assert report["status"] == "interrupted" and report["items_remaining"] == 2
    for plot in ("memory.png", "throughput.png"):
        assert (root / "debug_plots" / run_id / plot).stat().st_size > 1000
