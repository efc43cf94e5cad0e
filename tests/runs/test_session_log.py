from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from quantnb.runs import read_heartbeat

CHILD = Path(__file__).with_name("_child.py")
SECRET = "sk-test-9f8e7d6c5b4a"


def _run_child(root: Path, scenario: str, n: int = 0, **kw) -> subprocess.Popen:
    env = {**os.environ, "QUANTNB_TEST_API_KEY": SECRET}
    return subprocess.Popen([sys.executable, str(CHILD), str(root), scenario, str(n)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _log_path(first_line: bytes) -> Path:
    assert first_line.startswith(b"LOG "), first_line
    return Path(first_line[4:].decode().strip())


def test_session_log_captures_every_stream_in_order_and_masks_secrets(tmp_path):
    proc = _run_child(tmp_path, "streams")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1  # the uncaught RuntimeError
    log = _log_path(out.splitlines()[0]).read_text()
    expected_in_order = [
        "| INFO     |", "loguru record",
        "third-party warning shown",
        "chatty info shown",
        "plain print",
        "stderr text",
        "UserWarning: careful now",
    ]
    pos = 0
    for needle in expected_in_order:
        nxt = log.find(needle, pos)
        assert nxt >= 0, f"{needle!r} missing or out of order in:\n{log}"
        pos = nxt
    assert "third-party info hidden" not in log  # third-party INFO is below the default WARNING
    for i in range(3):
        assert f"worker line {i}" in log and f"worker print {i}" in log
    assert "SpawnProcess" in log  # worker records carry their process name
    assert "Uncaught exception" in log and "RuntimeError: boom uncaught" in log
    assert "Traceback" in log
    assert SECRET not in log and "secret is ***" in log and "secret in record ***" in log
    assert SECRET not in err.decode()
    # every line has the documented format: time | level | process:thread | name:line | message
    first = log.splitlines()[0]
    parts = first.split(" | ")
    assert len(parts) >= 5 and parts[2] == "MainProcess:MainThread", first


def test_every_line_logged_before_sigkill_is_on_disk(tmp_path):
    rng = random.Random(20261121)
    for attempt in range(3):
        root = tmp_path / f"kill{attempt}"
        proc = _run_child(root, "flood", 10_000_000, start_new_session=True)
        log_path = _log_path(proc.stdout.readline())
        target = rng.randint(200, 5000)
        acked = -1
        while acked < target:
            line = proc.stdout.readline()
            assert line, "child ended early"
            acked = int(line.split()[1])
        os.killpg(proc.pid, signal.SIGKILL)
        rest = proc.stdout.read()  # acks written before the kill landed
        for line in rest.splitlines():
            if line.startswith(b"ACK "):
                acked = max(acked, int(line.split()[1]))
        proc.wait()
        logged = {int(line.rsplit(" ", 1)[1]) for line in log_path.read_text().splitlines() if "| line " in line}
        missing = [i for i in range(acked + 1) if i not in logged]
        assert not missing, f"kill {attempt}: {len(missing)} acknowledged lines lost, first {missing[:5]}"
        hb = read_heartbeat(root / "logs" / "heartbeats" / f"{log_path.stem}_heartbeat.json")
        assert hb is not None and hb["status"] == "interrupted" and not hb["pid_alive"]
