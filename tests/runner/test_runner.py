from __future__ import annotations

import json

import nbformat

from tests.conftest import run_cli

FAKE_KEY = "fake-api-key-0123456789abcdef"


def test_unknown_parameter_is_refused_before_anything_runs(project):
    res = run_cli("run", "postmortem", "-p", "target_run_idd", "x", cwd=project)
    assert res.returncode == 2
    assert "unknown parameter 'target_run_idd'; did you mean 'target_run_id'" in res.stderr
    assert not (project / "runs").exists() or not any((project / "runs").iterdir())


def test_ill_typed_parameter_is_refused(project):
    res = run_cli("run", "etl", "-p", "n_workers", "-3", cwd=project)
    assert res.returncode == 2 and "n_workers=-3" in res.stderr


def test_failed_run_keeps_its_notebook_and_records_the_failing_cell(project):
    res = run_cli("run", "postmortem", "-p", "target_run_id", "no_such_run", cwd=project)
    assert res.returncode == 1, res.stderr
    (run_dir,) = [p for p in (project / "runs").iterdir() if p.is_dir()]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed"
    assert record["failure"]["ename"] == "ConfigError" and "no_such_run" in record["failure"]["evalue"]
    nb = nbformat.read(run_dir / "postmortem.ipynb", as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert errors and errors[0]["ename"] == "ConfigError"
    for key in ("started_at", "ended_at", "duration_s", "git_commit", "versions", "parameters"):
        assert key in record, key


def test_secret_passed_as_parameter_is_refused_and_never_written(project):
    res = run_cli("run", "postmortem", "-p", "target_stage", FAKE_KEY, cwd=project,
                  env={"QUANTNB_BINANCE_API_KEY": FAKE_KEY})
    assert res.returncode == 2
    assert "carries the value of a secret" in res.stderr
    assert FAKE_KEY not in res.stderr + res.stdout
    for path in project.rglob("*"):
        if path.is_file() and not path.is_symlink() and "samples" not in path.parts:
            assert FAKE_KEY not in path.read_text(errors="replace"), path
