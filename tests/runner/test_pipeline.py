"""``quantnb pipeline``: every step validated before the first runs; steps refer to earlier steps' outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import SAMPLES, run_cli

OB200 = SAMPLES / "bybit" / "2026-08-09_BTCUSDT_ob200.data"


def _write(project: Path, name: str, stages: list[dict]) -> Path:
    path = project / "configs" / name
    path.write_text(yaml.safe_dump({"name": name.removesuffix(".yaml"), "stages": stages}, sort_keys=False))
    return path


def test_a_typo_in_a_later_step_is_refused_before_the_first_step_runs(project):
    _write(project, "typo.yaml", [
        {"stage": "etl", "params": {"input_globs": [str(OB200)], "n_workers": 1}},
        {"stage": "labelling", "params": {"lookahead_min": 30}},
        {"stage": "optimization", "id": "search", "params": {"n_trails": 3}},
    ])
    res = run_cli("pipeline", "-f", "configs/typo.yaml", cwd=project)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "configs/typo.yaml, step 'search' (stages[2])" in res.stderr
    assert "unknown parameter 'n_trails'; did you mean 'n_trials'?" in res.stderr
    assert "command line" not in res.stderr and "Traceback" not in res.stderr
    assert not (project / "runs").exists() or not any((project / "runs").glob("*/run.json")), "a step ran"


def test_a_reference_to_no_earlier_step_is_refused_before_anything_runs(project):
    _write(project, "ref.yaml", [
        {"stage": "etl", "params": {"input_globs": [str(OB200)], "n_workers": 1}},
        {"stage": "postmortem", "params": {"target_run_id": "${labelling.run_id}"}},
        {"stage": "labelling", "params": {}},
    ])
    res = run_cli("pipeline", "-f", "configs/ref.yaml", cwd=project)
    assert res.returncode == 2
    assert "step 'postmortem' (stages[1]): ${labelling.run_id} refers to no earlier step" in res.stderr
    assert not any((project / "runs").glob("*/run.json"))


@pytest.mark.slow
def test_a_step_takes_an_earlier_steps_recorded_output(project, tmp_path):
    out = tmp_path / "volume" / "bars"  # outside the project, as a shared data volume
    _write(project, "chain.yaml", [
        {"stage": "etl", "params": {"input_globs": [str(OB200)], "n_workers": 1, "output_dir": str(out)}},
        {"stage": "labelling", "params": {
            "input_glob": "${etl.outputs.parquet_dir}/bybit/linear/BTCUSDT/*.parquet", "lookahead_min": 5,
            "n_workers": 1, "output_dir": "data/chain_labels"}},
    ])
    res = run_cli("pipeline", "-f", "configs/chain.yaml", cwd=project, env={"COLUMNS": "100"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    runs = {json.loads(p.read_text())["stage"]: json.loads(p.read_text()) for p in project.glob("runs/*/run.json")}
    assert runs["labelling"]["parameters"]["input_glob"] == f"{out}/bybit/linear/BTCUSDT/*.parquet"
    assert runs["labelling"]["outputs"]["labelled_dir"] == "data/chain_labels"
    assert list((project / "data" / "chain_labels").glob("*.parquet"))
    summary = res.stdout[res.stdout.index("Pipeline chain"):].splitlines()
    too_wide = [ln for ln in summary if len(ln) > 100 and " " in ln.strip()]  # a path alone may not fit
    assert not too_wide, res.stdout
    assert any(ln.strip().endswith(f"parquet_dir={out}") for ln in summary), res.stdout  # whole, not cut
