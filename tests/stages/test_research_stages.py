from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import run_cli

CHILD = Path(__file__).with_name("_opt_child.py")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _study(root: Path, labelled: str) -> optuna.Study:
    name = f"tcnlstm_{Path(labelled).name}"
    return optuna.load_study(study_name=name, storage=f"sqlite:///{root}/runs/optuna/optuna.db")


def _worker(root: Path, labelled: str, n_trials: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(CHILD), str(root), labelled, str(n_trials), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_two_optimization_workers_share_one_study(labelled_project):
    root, labelled = labelled_project
    workers = [_worker(root, labelled, 4), _worker(root, labelled, 4)]
    for w in workers:
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err.decode()[-3000:]
    trials = _study(root, labelled).get_trials(states=FINISHED)
    numbers = [t.number for t in trials]
    assert 4 <= len(trials) <= 5 and len(set(numbers)) == len(numbers)  # at most one overshoot from the race
    ckpts = [json.loads(p.read_text()) for p in (root / "logs" / "checkpoints").glob("optimization_*.json")]
    assert len(ckpts) == 2  # two runs, one per worker process
    done = [set(c["completed"]) for c in ckpts]
    assert all(done), "each worker finished trials of its own"
    assert set.union(*done) == {f"trial-{n}" for n in numbers}


@pytest.mark.slow
def test_killed_optimization_resumes_without_repeating_finished_trials(labelled_project):
    root, labelled = labelled_project
    proc = _worker(root, labelled, 5)
    deadline = time.monotonic() + 240
    before: dict[int, float] = {}
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.3)
        try:
            done = _study(root, labelled).get_trials(states=FINISHED)
        except (KeyError, optuna.exceptions.StorageInternalError, Exception):  # study not created yet
            continue
        if len(done) >= 2:
            before = {t.number: t.value for t in done}
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert len(before) >= 2, "the worker never reached two finished trials"
    resumed = _worker(root, labelled, 5, "resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()[-3000:]
    finished = {t.number: t for t in _study(root, labelled).get_trials(states=FINISHED)}
    assert len(finished) == 5
    for number, value in before.items():  # the earlier trials stand unchanged, none run again
        assert finished[number].value == value
    best = json.loads((root / "runs" / "optuna" / f"tcnlstm_{Path(labelled).name}_best_params.json").read_text())
    assert best["best_trial"] in finished and best["val_f1_macro"] == pytest.approx(
        max(t.value for t in finished.values() if t.state == TrialState.COMPLETE))


@pytest.mark.slow
def test_research_notebooks_run_through_papermill(tmp_path):
    from tests.conftest import make_project

    root = make_project(tmp_path / "proj")
    etl = run_cli("run", "etl", "-p", "input_globs", '["data/samples/ohlcv/*.csv"]', "-p", "n_workers", "1",
                  cwd=root)
    assert etl.returncode == 0, etl.stdout + etl.stderr
    lab = run_cli("run", "labelling", "-p", "input_glob", "data/processed/unknown/perp/BTC-PERP/2022-01-0[1-4].parquet",
                  "-p", "lookahead_min", "30", "-p", "threshold_short_frac", "-0.002",
                  "-p", "threshold_long_frac", "0.002", cwd=root)
    assert lab.returncode == 0, lab.stdout + lab.stderr
    labelled = "data/labelled/SELL_0002_BUY_0002_30m"
    files = sorted((root / labelled).glob("*.parquet"))
    assert [f.name for f in files] == [f"2022-01-0{d}.parquet" for d in range(1, 5)]
    log = next((root / "logs" / "labelling").glob("labelling_SELL_0002_BUY_0002_30m_*.log")).read_text()
    assert "2022-01-01.parquet -> SELL:" in log and "Total -> SELL:" in log
    assert (root / "logs" / "labelling" / "labelling_processing.log").exists()
    opt = run_cli("run", "optimization", "-p", "labelled_dir", labelled, "-p", "n_trials", "2",
                  "-p", "epochs_per_trial", "1", "-p", "tcn_channels", "[4]", "-p", "lstm_hidden", "[8]",
                  "-p", "seq_len", "[8]", "-p", "batch_size", "[512]", cwd=root)
    assert opt.returncode == 0, opt.stdout + opt.stderr
    (opt_dir,) = (root / "runs").glob("optimization_*")
    tr = run_cli("run", "training", "-p", "labelled_dir", labelled, "-p", "best_params_path",
                 f"runs/{opt_dir.name}/best_params.json", "-p", "epochs", "2", cwd=root)
    assert tr.returncode == 0, tr.stdout + tr.stderr
    (train_dir,) = (root / "runs").glob("training_*")
    record = json.loads((train_dir / "run.json").read_text())
    assert record["status"] == "completed" and 0 <= record["results"]["test_f1_macro"] <= 1
    from quantnb.classifier import load_model_bundle

    bundle = load_model_bundle(train_dir / "model")
    assert bundle.metadata["label_suffix"] == "SELL_0002_BUY_0002_30m"
    assert (root / "debug_plots" / train_dir.name / "confusion_matrix.png").stat().st_size > 0
    train_log = (root / "logs" / "training" / f"{train_dir.name}.log").read_text()
    for needle in ("Train Loss", "F1 Macro", "Best model saved"):
        assert needle in train_log, needle


def test_changed_search_space_on_an_existing_study_is_refused(labelled_project):
    from quantnb.errors import ConfigError
    from quantnb.stages.optimization import OptimizationParams, check_study_compatible, open_study

    root, labelled = labelled_project
    base = dict(project_dir=str(root), labelled_dir=labelled, tcn_channels=[4, 8], lstm_hidden=[8])
    study = open_study("sqlite:///runs/optuna/optuna.db", "space_test", 0, 1, root)
    first = OptimizationParams(**base)
    check_study_compatible(study, first)
    trial = study.ask()
    trial.suggest_categorical("tcn_channels", [4, 8])
    study.tell(trial, 0.5)
    check_study_compatible(study, first)  # same space: accepted
    with pytest.raises(ConfigError, match="tcn_channels.*new study_name"):
        check_study_compatible(study, OptimizationParams(**{**base, "tcn_channels": [4, 8, 16]}))
    with pytest.raises(ConfigError, match="epochs_per_trial"):
        check_study_compatible(study, OptimizationParams(**{**base, "epochs_per_trial": 9}))
