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
NASTY = 'Zq9\\w"Xk!7'  # a backslash and a quote: escaped once by repr/JSON, twice in a notebook's JSON


def _forms(secret: str) -> set[bytes]:
    """``secret`` raw, repr- and JSON-escaped, and both nested (a repr in a notebook's JSON)."""
    once = {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1]}
    return {f.encode() for f in once | {json.dumps(f)[1:-1] for f in once} | {repr(f)[1:-1] for f in once}}


def _project_files(root: Path) -> list[Path]:
    """Every file under the project but the inputs (the samples, and data/in holding the secret line)."""
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and "samples" not in p.parts
            and (root / "data" / "in") not in p.parents]


def _etl_project(root: Path, secret: str = SECRET) -> Path:
    from tests.conftest import make_project

    make_project(root)
    inputs = root / "data" / "in"
    inputs.mkdir(parents=True)
    lines = (SAMPLES / "trades" / "BTCUSDT-trades-2024-08-08.csv").read_text().splitlines()
    (inputs / "BTCUSDT-trades-2024-08-08.csv").write_text("\n".join(lines[:1500]) + "\n")
    field = f'"{secret.replace(chr(34), chr(34) * 2)}"' if '"' in secret else secret  # CSV quoting
    bad = [*lines[:40], f"5266583999,{field},0.001,61.8,1723161256999,false", *lines[40:80]]
    (inputs / "ETHUSDT-trades-2024-08-09.csv").write_text("\n".join(bad) + "\n")
    return root


def _quantnb(root: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([QUANTNB, *args], cwd=root, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env}, preexec_fn=lambda: os.umask(0o022))


@pytest.mark.slow
@pytest.mark.parametrize("secret", [SECRET, NASTY], ids=["plain", "backslash-quote"])
def test_a_quarantined_secret_line_reaches_no_file_and_files_honour_the_umask(tmp_path, secret):
    root = _etl_project(tmp_path / "proj", secret)
    res = _quantnb(root, "run", "etl", "-p", "input_globs", "[data/in/*.csv]", "-p", "n_workers", "1",
                   env={"FOO_SECRET": secret})
    assert res.returncode == 0, res.stderr[-3000:]
    assert not [f for f in _forms(secret) if f in (res.stdout + res.stderr).encode()]
    run_id = next(p.name for p in (root / "runs").iterdir() if p.name.startswith("etl_"))
    rec = json.loads((root / "runs" / run_id / "run.json").read_text())
    assert rec["status"] == "completed_with_errors"
    assert rec["metrics"]["files"] == 1 and rec["metrics"]["quarantined"] == 1 and rec["metrics"]["bars"] > 0
    (reason,) = rec["failed_items"].values()
    assert "***" in reason  # the quarantine reason quotes the line, masked
    files = _project_files(root)
    assert any(p.suffix == ".parquet" for p in files) and any(p.suffix == ".ipynb" for p in files)
    for path in files:
        assert not [f for f in _forms(secret) if f in path.read_bytes()], path
    written = [p for p in files if (root / "runs") in p.parents or (root / "logs") in p.parents
               or (root / "data" / "processed") in p.parents]
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, (path, oct(path.stat().st_mode))
    assert not [p for p in files if p.name.endswith(".tmp")]
    if secret != NASTY:
        return  # the resume below is one path for both secrets: run it with the harder one
    # resume of the finished run: still no temporary file
    again = _quantnb(root, "run", "etl", "--resume", run_id, env={"FOO_SECRET": secret})
    assert again.returncode == 0, again.stderr[-3000:]
    assert not [p for p in _project_files(root) if p.name.endswith(".tmp")]
    for path in _project_files(root):
        assert not [f for f in _forms(secret) if f in path.read_bytes()], path


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


def test_a_clickhouse_url_with_a_password_is_refused_before_the_run_exists(project):
    pw = "Ch-s3cr3t-9q"
    for url in (f"http://default:{pw}@127.0.0.1:8123/quantnb", f"https://default@127.0.0.1:8443/q?password={pw}"):
        res = _quantnb(project, "run", "record", "-p", "clickhouse_url", url,
                       "-p", "sinks", "[raw, parquet, clickhouse]", env={})
        assert res.returncode == 2, res.stderr[-2000:]
        assert "clickhouse_url carries a password" in res.stderr and "CLICKHOUSE_PASSWORD" in res.stderr
        assert pw not in res.stdout + res.stderr
        assert not (project / "runs").exists() and not (project / "logs").exists()
    from quantnb.stages.record import RecordParams

    ok = RecordParams.parse({"clickhouse_url": "http://default@127.0.0.1:8123/quantnb"})
    assert ok.clickhouse_url == "http://default@127.0.0.1:8123/quantnb"
