"""Cross-field rules and path-escaping ids are ConfigErrors before any work."""

from __future__ import annotations

import pytest

from quantnb.errors import ConfigError
from quantnb.stages.agent import AgentParams
from quantnb.stages.etl import EtlParams
from quantnb.stages.labelling import LabellingParams
from quantnb.stages.live import LiveParams
from quantnb.stages.optimization import OptimizationParams
from quantnb.stages.postmortem import PostmortemParams
from quantnb.stages.training import TrainingParams
from tests.conftest import run_cli


@pytest.mark.parametrize(("cls", "values", "needles"), [
    (OptimizationParams, {"lr_min": 1e-2, "lr_max": 1e-3}, ["lr_min=0.01 > lr_max=0.001", "set lr_min <= lr_max"]),
    (OptimizationParams, {"dropout_min": 0.5, "dropout_max": 0.1}, ["dropout_min=0.5 > dropout_max=0.1"]),
    (OptimizationParams, {"train_frac": 0.8, "val_frac": 0.2}, ["train_frac=0.8 + val_frac=0.2", "< 1"]),
    (TrainingParams, {"train_frac": 0.9, "val_frac": 0.15}, ["leaves no test split"]),
    (AgentParams, {"total_timesteps": 500, "checkpoint_every_steps": 1000},
     ["checkpoint_every_steps=1000 > total_timesteps=500"]),
    (AgentParams, {"batch_size": 512, "buffer_size": 100}, ["batch_size=512 > buffer_size=100"]),
])
def test_cross_field_rules_name_the_parameters_values_and_fix(cls, values, needles):
    with pytest.raises(ConfigError) as info:
        cls.parse(values)
    for needle in needles:
        assert needle in str(info.value), str(info.value)


def test_threshold_rule_is_checked_by_the_shared_validator():
    from quantnb.config import cross_field_problems

    (problem,) = cross_field_problems({"threshold_short_frac": 0.01, "threshold_long_frac": 0.02})
    assert "threshold_short_frac < 0 < threshold_long_frac" in problem
    assert LabellingParams.parse({}).threshold_short_frac < 0  # defaults pass


@pytest.mark.parametrize(("cls", "values", "name"), [
    (LiveParams, {"train_id": "../../etc"}, "train_id"),
    (LiveParams, {"train_id": "agent_x", "run_id": "../x"}, "run_id"),
    (PostmortemParams, {"target_run_id": "/etc"}, "target_run_id"),
    (OptimizationParams, {"study_name": "../../evil"}, "study_name"),
])
def test_ids_that_escape_the_project_are_refused(cls, values, name):
    with pytest.raises(ConfigError, match=f"{name}=.*is not a plain name"):
        cls.parse(values)


def test_output_folders_may_be_anywhere_but_the_projects_own_run_folders(tmp_path):
    from quantnb.config import resolve_output_dir

    project = tmp_path / "proj"
    ok = EtlParams.parse({"output_dir": "../../out", "project_dir": str(project)})
    assert resolve_output_dir(ok.output_dir, project) == tmp_path.parent / "out"
    assert LabellingParams.parse({"output_root": "/srv/labelled", "project_dir": str(project)}).output_root
    with pytest.raises(ConfigError, match="output_dir='runs/etl'.*runs/ or logs/"):
        EtlParams.parse({"output_dir": "runs/etl", "project_dir": str(project)})
    with pytest.raises(ConfigError, match="output_root='./logs/../logs'"):
        LabellingParams.parse({"output_root": "./logs/../logs", "project_dir": str(project)})


def test_the_cli_refuses_an_escaping_train_id_with_a_config_error(project):
    res = run_cli("run", "live", "-p", "train_id", "../../etc", cwd=project)
    assert res.returncode == 2 and "ConfigError" in res.stderr and "train_id='../../etc'" in res.stderr
    assert "Traceback" not in res.stderr and "FileNotFoundError" not in res.stderr
    assert not (project / "runs").exists() or not any((project / "runs").iterdir())


@pytest.mark.parametrize("stage", ["etl", "record", "labelling"])
def test_resume_injects_only_what_the_run_changed_and_every_name_is_in_the_parameters_cell(stage, tmp_path):
    """A resumed run's recorded parameters: defaults (default_factory ones too) are not injected again."""
    import json

    import papermill

    from quantnb.runner._execute import resolve_params
    from quantnb.stages import params_class

    cls = params_class(stage)
    recorded = cls.parse({"project_dir": str(tmp_path), "console_level": "WARNING"}).model_dump(mode="json")
    run = tmp_path / "runs" / "old_run"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"stage": stage, "parameters": recorded}))
    _, values = resolve_params(stage, overrides={}, resume_run_id="old_run", root=tmp_path)
    assert "third_party_levels" not in values  # {} from a default_factory: papermill warned 'unknown parameter'
    assert values["console_level"] == "WARNING" and values["resume"] is True and values["run_id"] == "old_run"
    from tests.conftest import REPO

    cell = set(papermill.inspect_notebook(str(REPO / "notebooks" / f"{stage}.ipynb")))
    assert set(values) <= cell, f"not in the {stage} notebook's parameters cell: {sorted(set(values) - cell)}"
