from __future__ import annotations

import io
import json
import time

import pytest

from quantnb.runner._watch import HeartbeatProgress
from tests.conftest import run_cli


def test_heartbeat_progress_line_follows_the_heartbeat_json(tmp_path):
    hb = tmp_path / "hb.json"
    hb.write_text(json.dumps({"total_items": 5, "completed_items": 2, "failed_items": 0, "memory_gb": 0.4,
                              "last_item": "data/a.csv", "status": "running"}))
    out = io.StringIO()
    with HeartbeatProgress(hb, "etl", file=out, disable=False, poll_s=0.05):
        time.sleep(0.3)
        assert "2/5" in out.getvalue() and "RSS 0.40 GB" in out.getvalue()
        hb.write_text(json.dumps({"total_items": 5, "completed_items": 4, "failed_items": 1, "memory_gb": 0.5,
                                  "last_item": "data/b.csv", "status": "completed_with_errors"}))
        time.sleep(0.3)
    text = out.getvalue()
    assert "5/5" in text and "1 failed" in text and "completed_with_errors" in text


def test_heartbeat_progress_quiet_writes_nothing(tmp_path):
    out = io.StringIO()
    (tmp_path / "hb.json").write_text(json.dumps({"total_items": 1, "completed_items": 1}))
    with HeartbeatProgress(tmp_path / "hb.json", "etl", file=out, disable=True, poll_s=0.05):
        time.sleep(0.2)
    assert out.getvalue() == ""


@pytest.mark.slow
def test_log_output_streams_the_kernel_log_without_the_tcp_warning(project):
    proc = run_cli("run", "etl", "-p", "input_globs", "[data/samples/ohlcv/*.csv]", "-p", "n_workers", "1",
                   "--log-output", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "Starting run etl_" in proc.stdout and "ended: completed" in proc.stdout
    assert "without encryption" not in proc.stdout + proc.stderr
    assert "Saved " not in proc.stdout, "per-file detail is DEBUG (session log only)"
    assert not list(project.glob("kernel-ipc*")), "IPC sockets live in Jupyter's runtime directory"
