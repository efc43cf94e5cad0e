"""A stop signal is named as received: the runner relays SIGINT to the kernel, run.json keeps SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tests.conftest import QUANTNB
from tests.stages.test_trading_stages import LONG_ID, _live_args, _live_project, _state, tiny_bundles

__all__ = ["tiny_bundles"]  # the module fixture, shared with the stage tests


@pytest.mark.slow
def test_sigterm_to_the_runner_is_recorded_as_sigterm_not_sigint(tmp_path, tiny_bundles):
    split = tiny_bundles[2]
    root = _live_project(tmp_path, "sigterm", tiny_bundles)
    proc = subprocess.Popen([QUANTNB, *_live_args(LONG_ID, split, "-p", "replay_speed", "1500")], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and _state(root, LONG_ID).get("step", -1) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, out + err
    (live_dir,) = (root / "runs").glob("live_*")
    record = json.loads((live_dir / "run.json").read_text())
    assert record["status"] == "interrupted"
    assert record["error"] == "stopped by SIGTERM" and record["signal"] == "SIGTERM"
    assert "SIGINT" not in json.dumps(record)
