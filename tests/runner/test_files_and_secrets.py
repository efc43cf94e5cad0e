"""Every file a run writes: no secret value, the umask's mode, no temporary file left."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import QUANTNB, SAMPLES

SECRET = "s3cr3t-V4lue-77"  # the value of FOO_SECRET, quoted by a quarantined input line


def _project_files(root: Path) -> list[Path]:
    """Every file under the project but the inputs (the samples, and data/in holding the secret line)."""
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and "samples" not in p.parts
            and (root / "data" / "in") not in p.parents]


def _etl_project(root: Path) -> Path:
    from tests.conftest import make_project

    make_project(root)
    inputs = root / "data" / "in"
    inputs.mkdir(parents=True)
    lines = (SAMPLES / "trades" / "BTCUSDT-trades-2024-08-08.csv").read_text().splitlines()
    (inputs / "BTCUSDT-trades-2024-08-08.csv").write_text("\n".join(lines[:1500]) + "\n")
    bad = [*lines[:40], f"5266583999,{SECRET},0.001,61.8,1723161256999,false", *lines[40:80]]
    (inputs / "ETHUSDT-trades-2024-08-09.csv").write_text("\n".join(bad) + "\n")
    return root


def _quantnb(root: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([QUANTNB, *args], cwd=root, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env}, preexec_fn=lambda: os.umask(0o022))


@pytest.mark.slow
def test_a_quarantined_secret_line_reaches_no_file_and_files_honour_the_umask(tmp_path):
    root = _etl_project(tmp_path / "proj")
    res = _quantnb(root, "run", "etl", "-p", "input_globs", "[data/in/*.csv]", "-p", "n_workers", "1",
                   env={"FOO_SECRET": SECRET})
    assert res.returncode == 0, res.stderr[-3000:]
    assert SECRET not in res.stdout + res.stderr
    run_id = next(p.name for p in (root / "runs").iterdir() if p.name.startswith("etl_"))
    rec = json.loads((root / "runs" / run_id / "run.json").read_text())
    assert rec["status"] == "completed_with_errors"
    assert rec["metrics"]["files"] == 1 and rec["metrics"]["quarantined"] == 1 and rec["metrics"]["bars"] > 0
    (reason,) = rec["failed_items"].values()
    assert "***" in reason  # the quarantine reason quotes the line, masked
    files = _project_files(root)
    assert any(p.suffix == ".parquet" for p in files) and any(p.suffix == ".ipynb" for p in files)
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path
    written = [p for p in files if (root / "runs") in p.parents or (root / "logs") in p.parents
               or (root / "data" / "processed") in p.parents]
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, (path, oct(path.stat().st_mode))
    assert not [p for p in files if p.name.endswith(".tmp")]
    # resume of the finished run: still no temporary file
    again = _quantnb(root, "run", "etl", "--resume", run_id, env={"FOO_SECRET": SECRET})
    assert again.returncode == 0, again.stderr[-3000:]
    assert not [p for p in _project_files(root) if p.name.endswith(".tmp")]
    for path in _project_files(root):
        assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.slow
def test_plain_papermill_never_writes_a_secret_parameter(project):
    out = project / "out.ipynb"
    key = "pm-s3cret-9911"
    res = subprocess.run([sys.executable, "-m", "papermill", "notebooks/postmortem.ipynb", str(out),
                          "-p", "target_stage", key, "--cwd", str(project)],
                         cwd=project, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "QUANTNB_BINANCE_API_KEY": key})
    assert res.returncode != 0  # the notebook refuses the secret
    text = out.read_text()
    assert "carries the value of a secret" in text and "delete that file" in text
    for path in _project_files(project):
        assert key.encode() not in path.read_bytes(), path
