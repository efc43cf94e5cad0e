"""Stages that link up: later stages take the latest completed earlier run's recorded outputs, and say which."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from quantnb.errors import ConfigError
from quantnb.stages.labelling import LabellingParams, run_labelling
from quantnb.stages.live import LiveParams
from quantnb.stages.optimization import OptimizationParams, run_optimization
from quantnb.stages.training import TrainingParams, run_training
from tests.conftest import make_project
from tests.stages._opt_child import SMALL_STUDY
from tests.stages.conftest import write_labelled_month_slice
from tests.stages.test_outputs_anywhere import _record


def _label(root: Path, bars_glob: str, lookahead_min: int) -> object:
    return run_labelling(LabellingParams(input_glob=bars_glob, lookahead_min=lookahead_min, threshold_short_frac=-0.002,
                                         threshold_long_frac=0.002, output_root="data/mine", n_workers=1,
                                         project_dir=str(root), console_level=None))


@pytest.fixture
def two_labellings(tmp_path: Path) -> tuple[Path, object, object]:
    root = make_project(tmp_path / "proj")
    bars = f"{write_labelled_month_slice(root)}/*.parquet"  # three days of real 1-minute bars (labelled: extra columns)
    older = _label(root, bars, 60)
    newer = _label(root, bars, 120)
    assert older.status == newer.status == "completed"
    return root, older, newer


def test_optimization_and_training_default_to_the_latest_labelling_runs_output(two_labellings):
    root, older, newer = two_labellings
    assert newer.output_dir.name == "SELL_0002_BUY_0002_2h"
    for cls in (OptimizationParams, TrainingParams):
        p = cls(project_dir=str(root))
        recorded = _record(root, newer.run_id)["outputs"]["labelled_dir"]
        assert p.labelled_dir == "data/mine/SELL_0002_BUY_0002_2h" == recorded
        assert newer.run_id in p.labelled_source() and "latest completed labelling run" in p.labelled_source()
        assert p.run_suffix() == "SELL_0002_BUY_0002_2h"
        given = cls(project_dir=str(root), labelled_dir=str(older.output_dir))
        assert given.labelled_dir == str(older.output_dir) and "(given)" in given.labelled_source()


def test_without_a_labelling_run_the_stage_says_to_run_it(tmp_path):
    root = make_project(tmp_path / "proj")
    p = OptimizationParams(project_dir=str(root), console_level=None)
    assert p.labelled_dir is None
    with pytest.raises(ConfigError, match="no completed labelling run.*quantnb run labelling"):
        run_optimization(p)


def test_training_without_best_params_says_plainly_there_is_no_optimization(two_labellings):
    root, _, newer = two_labellings
    p = TrainingParams(project_dir=str(root))
    assert p.best_params_path is None
    assert p.best_params_source().startswith("no completed optimization run on data/mine/SELL_0002_BUY_0002_2h")


@pytest.mark.slow
def test_training_takes_the_latest_optimizations_best_params_for_the_same_labelled_data(two_labellings):
    root, older, newer = two_labellings
    common = dict(project_dir=str(root), n_trials=1, console_level=None, **SMALL_STUDY)
    on_older = run_optimization(OptimizationParams(labelled_dir=str(older.output_dir), seed=1, **common))
    on_newer = run_optimization(OptimizationParams(seed=2, **common))  # labelled_dir: the latest, the newer
    assert json.loads(on_newer.best_params_path.read_text())["labelled_dir"] == "data/mine/SELL_0002_BUY_0002_2h"
    p = TrainingParams(project_dir=str(root), epochs=1, console_level=None)
    opt_run = _record(root, on_newer.run_id)
    assert p.best_params_path == opt_run["outputs"]["best_params"]
    assert on_newer.run_id in p.best_params_source()
    res = run_training(p)
    log = (root / "logs" / "training" / f"{res.run_id}.log").read_text()
    assert f"from {on_newer.run_id}, the latest completed optimization" in log
    assert "(torch threads: 1)" in log  # the default: one thread is fastest for these small models
    meta = yaml.safe_load((res.bundle_dir / "config_metadata.yaml").read_text())
    assert _record(root, res.run_id)["parameters"]["best_params_path"] == opt_run["outputs"]["best_params"]
    for name in ("seq_len", "tcn_channels", "lstm_hidden", "lr", "dropout"):  # trained on those, not the defaults
        assert meta["parameters"][name] == on_newer.best_params[name], name
    on_older_p = TrainingParams(project_dir=str(root), labelled_dir=str(older.output_dir))
    assert on_older.run_id in on_older_p.best_params_source()


def test_an_empty_train_id_says_where_agent_ids_come_from_and_lists_the_latest(tmp_path):
    root = make_project(tmp_path / "proj")
    with pytest.raises(ConfigError, match=r"train_id is empty.*quantnb runs --stage agent.*run the agent stage"):
        LiveParams.parse({"project_dir": str(root)})
    for n, status in enumerate(["completed", "failed", "completed"]):
        run = root / "runs" / f"agent_x_2026120{n}_000000"
        run.mkdir(parents=True)
        (run / "run.json").write_text(json.dumps({"stage": "agent", "status": status,
                                                  "ended_at": f"2026-12-0{n}T00:00:00Z"}))
    with pytest.raises(ConfigError) as err:
        LiveParams.parse({"train_id": "", "project_dir": str(root)})
    assert "the latest completed: agent_x_20261202_000000, agent_x_20261200_000000" in str(err.value)
    assert "length" not in str(err.value)


@pytest.mark.parametrize("stage", ["optimization", "training"])
def test_torch_threads_default_to_one_in_the_parameters_and_the_notebook(stage):
    import papermill

    from quantnb.stages import params_class
    from tests.conftest import REPO

    assert params_class(stage).model_fields["num_threads"].default == 1
    cell = papermill.inspect_notebook(str(REPO / "notebooks" / f"{stage}.ipynb"))
    assert cell["num_threads"]["default"] == "1", "the notebook's parameters cell overrides the model's default"
