"""The command line reads well: plain help, a stage's own help, tables that fit the terminal."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli


def test_quantnb_help_shows_no_restructuredtext_markup(project):
    for args in (["--help"], ["run", "--help"], ["runs", "--help"], ["pipeline", "--help"]):
        res = run_cli(*args, cwd=project)
        assert res.returncode == 0 and "usage: quantnb" in res.stdout
        assert "``" not in res.stdout and ":func:" not in res.stdout and ":class:" not in res.stdout, res.stdout


@pytest.mark.parametrize(("stage", "first_line", "param_line", "help_text"), [
    ("etl", "ETL stage: raw exchange files", "output_dir : str = 'data/processed'", "an absolute folder"),
    ("labelling", "Labelling stage: SELL / NEUTRAL / BUY", "lookahead_min : int > 0 = 60", "Forward-return horizon"),
    ("live", "Live stage: the trader", "max_drawdown_frac : float = 0.2", "emergency protocol, in (0, 1)"),
])
def test_a_stages_help_lists_its_description_parameters_and_exit_codes(project, stage, first_line, param_line,
                                                                        help_text):
    res = run_cli("run", stage, "--help", cwd=project, env={"COLUMNS": "100"})
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.startswith(f"usage: quantnb run {stage}") and first_line in out
    assert param_line in out and help_text in out, out
    assert "exit codes:" in out and "2    bad parameters" in out and "130  interrupted" in out
    assert "``" not in out
    assert not (project / "runs").exists() or not any((project / "runs").iterdir()), "help ran something"


def test_run_help_differs_per_stage(project):
    etl = run_cli("run", "etl", "-h", cwd=project).stdout
    live = run_cli("run", "live", "-h", cwd=project).stdout
    assert "input_globs" in etl and "input_globs" not in live and "train_id" in live


def test_quantnb_runs_fits_the_terminal_width(project):
    for n, stage in enumerate(["labelling", "optimization", "training"]):
        run_id = f"{stage}_SELL_0004_BUY_0008_30m_2026120{n}_072745"
        (project / "runs" / run_id).mkdir(parents=True)
        (project / "runs" / run_id / "run.json").write_text(json.dumps({
            "run_id": run_id, "stage": stage, "status": "completed", "started_at": f"2026-12-0{n + 1}T07:27:45Z",
            "ended_at": f"2026-12-0{n + 1}T07:29:45Z", "metrics": {"rows": 45_000, "best_f1_macro": 0.41},
            "log": f"logs/{stage}/{run_id}.log"}))
    for width in (80, 120):
        res = run_cli("runs", cwd=project, env={"COLUMNS": str(width)})
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert all(len(ln) <= width for ln in lines), res.stdout
        for n, stage in enumerate(["labelling", "optimization", "training"]):  # ids whole, never cut
            assert any(ln.startswith(f"{stage}_SELL_0004_BUY_0008_30m_2026120{n}_072745") for ln in lines)
        assert "logs/training/training_SELL_0004_BUY_0008_30m_20261202_072745.log" in res.stdout
