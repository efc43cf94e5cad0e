from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
CHILD = [sys.executable, "-m", "tests.classifier._train_child"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def start(ckpt: Path, result: Path, *extra: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([*CHILD, str(ckpt), str(result), *extra], cwd=REPO, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=open(log, "w"))  # noqa: SIM115


def comparable(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "duration_s"} for h in history]


@pytest.mark.slow
def test_resume_after_sigkill_mid_epoch_matches_uninterrupted_run(tmp_path: Path) -> None:
    reference = start(tmp_path / "ref", tmp_path / "ref.json", log=tmp_path / "ref.log")
    killed = start(tmp_path / "run", tmp_path / "killed.json", "--hang-at", "3", log=tmp_path / "run.log")
    watchdog = threading.Timer(240, killed.kill)
    watchdog.start()
    try:
        assert killed.stdout is not None
        for line in killed.stdout:
            _, epoch, batch, n_batches = line.split()
            if int(epoch) == 3 and int(batch) == int(n_batches) // 2:
                break
        else:
            pytest.fail(f"child ended before epoch 3: {(tmp_path / 'run.log').read_text()[-2000:]}")
        last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
        assert last["epoch"] == 2 and not last["finished"]  # killed mid-way through epoch 3
        os.kill(killed.pid, signal.SIGKILL)
        assert killed.wait(30) == -signal.SIGKILL
    finally:
        watchdog.cancel()
    assert not (tmp_path / "killed.json").exists()
    resumed = subprocess.run([*CHILD, str(tmp_path / "run"), str(tmp_path / "resumed.json"), "--resume"], cwd=REPO,
                             env=ENV, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in resumed.stderr and "after epoch 2" in resumed.stderr
    assert reference.wait(240) == 0, (tmp_path / "ref.log").read_text()[-3000:]

    ref = json.loads((tmp_path / "ref.json").read_text())
    res = json.loads((tmp_path / "resumed.json").read_text())
    assert res["resumed_from_epoch"] == 2 and ref["resumed_from_epoch"] == 0
    assert len(res["history"]) == len(ref["history"]) == 5
    for a, b in zip(comparable(ref["history"]), comparable(res["history"]), strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-6), (a["epoch"], key)
    assert res["best_f1_macro"] == pytest.approx(ref["best_f1_macro"], abs=1e-6)
    assert res["best_epoch"] == ref["best_epoch"]
    assert res["test"]["confusion"] == ref["test"]["confusion"]
    for key in ("f1_macro", "f1_weighted", "loss"):
        assert res["test"][key] == pytest.approx(ref["test"][key], abs=1e-6)
