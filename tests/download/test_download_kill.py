"""SIGKILL of the whole `quantnb run download` tree mid-transfer, then resume: the same files, byte for byte."""

from __future__ import annotations

import json
import subprocess
import time

import psutil
import pytest

from quantnb.testing import ArchiveServer
from tests.conftest import QUANTNB, run_cli

DAYS = range(1, 9)
KLINES = "data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2022-01-{:02d}.zip"


@pytest.mark.slow
def test_sigkill_of_the_whole_tree_mid_download_then_resume_gives_the_same_files(project, archive_files):
    with ArchiveServer(archive_files, bytes_per_s=20_000) as srv:  # about 2 s a file: the kill lands mid-file
        args = ["run", "download", "-p", "base_url", srv.url, "-p", "start", "2022-01-01", "-p", "end",
                "2022-01-08", "-p", "max_concurrency", "2"]
        proc = subprocess.Popen([QUANTNB, *args], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        run_id = proc.stdout.readline().split(" run ")[1].split()[0]
        raw = project / "data" / "raw"
        ckpt = project / "logs" / "checkpoints" / f"{run_id}_completed.json"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # at least one file verified and one part file growing
            done = json.loads(ckpt.read_text())["completed"] if ckpt.exists() else []
            parts = [p for p in raw.rglob(".*.part") if p.stat().st_size > 0] if raw.exists() else []
            if done and parts or proc.poll() is not None:
                break
            time.sleep(0.02)
        if proc.poll() is not None or not (done and parts):
            proc.kill()
            pytest.fail(f"no verified file and part file while it ran: {proc.communicate()}")
        tree = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
        for pid in tree:  # runner and kernel: nobody writes an end
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                pass
        proc.communicate(timeout=60)
        verified = set(json.loads(ckpt.read_text())["completed"])
        assert 1 <= len(verified) < len(DAYS)
        cut = [p.name for p in raw.rglob(".*.part") if p.stat().st_size > 0]
        assert cut, "every part file finished between the poll and the kill: nothing left to continue"
        n_before = len(srv.requests)
        srv.bytes_per_s = None
        done = run_cli("run", "download", "--resume", run_id, cwd=project)
        assert done.returncode == 0, done.stdout + done.stderr
        after = srv.requests[n_before:]
    for day in DAYS:
        assert (raw / KLINES.format(day)).read_bytes() == archive_files[KLINES.format(day)]
    assert not list(raw.rglob(".*.part"))
    asked = {p.lstrip("/") for _, p, _ in after}
    assert not asked & verified, "a verified file was fetched again"
    assert any(r.startswith("bytes=") and r != "bytes=0-" for _, _, r in after), "no part file was continued"
    record = json.loads((project / "runs" / run_id / "run.json").read_text())
    assert record["status"] == "completed" and record["results"]["downloaded"] + record["results"]["skipped"] == 8


@pytest.mark.slow
def test_sigterm_mid_download_records_interrupted_keeps_the_part_file_and_resume_completes(project, archive_files):
    import signal

    with ArchiveServer(archive_files, bytes_per_s=20_000) as srv:
        args = ["run", "download", "-p", "base_url", srv.url, "-p", "start", "2022-01-01", "-p", "end",
                "2022-01-03", "-p", "max_concurrency", "1"]
        proc = subprocess.Popen([QUANTNB, *args], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        run_id = proc.stdout.readline().split(" run ")[1].split()[0]
        raw = project / "data" / "raw"
        deadline = time.monotonic() + 120
        parts: list = []
        while time.monotonic() < deadline and proc.poll() is None and not parts:
            parts = [p for p in raw.rglob(".*.part") if p.stat().st_size > 0] if raw.exists() else []
            time.sleep(0.02)
        assert parts, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 143, out + err
        record = json.loads((project / "runs" / run_id / "run.json").read_text())
        assert record["status"] == "interrupted"
        assert any(p.stat().st_size > 0 for p in raw.rglob(".*.part"))  # kept for the Range request
        srv.bytes_per_s = None
        done = run_cli("run", "download", "--resume", run_id, cwd=project)
        assert done.returncode == 0, done.stdout + done.stderr
    for day in (1, 2, 3):
        assert (raw / KLINES.format(day)).read_bytes() == archive_files[KLINES.format(day)]
    assert json.loads((project / "runs" / run_id / "run.json").read_text())["status"] == "completed"
