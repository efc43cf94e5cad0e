"""Optimization under kills and with several workers (issue 7 §1): same trials after resume, no repeats."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.conftest import make_project, run_cli
from tests.stages._opt_helpers import (
    FINISHED,
    SMALL_STUDY_CLI,
    cli,
    duplicate_settings,
    kill_tree,
    load,
    outcome,
    sqlite_url,
    wait_for_running_trial,
    worker,
)
from tests.stages.conftest import write_labelled_month_slice

N_TRIALS = 4


def _finish(proc, timeout_s: float = 300) -> None:
    _, err = proc.communicate(timeout=timeout_s)
    assert proc.returncode == 0, err.decode()[-3000:]


@pytest.mark.slow
def test_study_killed_twice_at_seeded_random_points_resumes_to_the_uninterrupted_trials(tmp_path: Path):
    ref_root = make_project(tmp_path / "reference")
    labelled = write_labelled_month_slice(ref_root)
    reference = worker(ref_root, labelled, N_TRIALS)  # the uninterrupted study, same seed, meanwhile
    root = make_project(tmp_path / "killed")
    write_labelled_month_slice(root)
    storage = sqlite_url(root)
    rng = random.Random(int(os.environ.get("QUANTNB_TEST_KILL_SEED", "20261130")))  # other seeds: other points
    args = ["-p", "labelled_dir", labelled, "-p", "n_trials", str(N_TRIALS), *SMALL_STUDY_CLI]
    run_id, kills = None, []
    for attempt in range(2):  # kill the first run, then the resumed one, each at a seeded random point
        proc = cli(root, *(["--resume", run_id] if run_id else args))
        study = load(storage, labelled)
        existing = len(study.get_trials(deepcopy=False)) if study else 0
        # while this trial runs (or between it and the next): the first kill anywhere in the study
        at_trial = existing + rng.randrange(0, N_TRIALS - 1 if attempt == 0 else 2)
        delay_s = rng.uniform(0.0, 1.2)
        if wait_for_running_trial(storage, labelled, at_trial, proc):
            time.sleep(delay_s)
            if proc.poll() is None:
                kill_tree(proc.pid)
                kills.append((attempt, at_trial, round(delay_s, 2)))
        proc.wait(timeout=60)
        (run_dir,) = (root / "runs").glob("optimization_*")
        run_id = run_dir.name
    assert kills, "no kill landed: the study finished before the seeded kill points"
    print("kills (attempt, at trial, after s):", kills)
    resumed = cli(root, "--resume", run_id)
    assert resumed.wait(timeout=300) == 0, (next(root.glob("cli_*.out")).read_text()[-3000:], kills)
    _finish(reference)

    done, expected = load(storage, labelled), load(sqlite_url(ref_root), labelled)
    assert len(expected.get_trials(states=FINISHED)) == N_TRIALS
    assert outcome(done) == outcome(expected), kills  # same settings, values and states
    trials = done.get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    retries = [t for t in trials if "failed_trial" in t.system_attrs]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert len(retries) == len(failed), "every trial a kill left behind is retried, and only those"
    for r in retries:  # a retry keeps what its original had drawn (a kill may land between two parameters)
        original = next(t for t in trials if t.number == r.system_attrs["failed_trial"])
        assert original.params.items() <= r.params.items()
    record = json.loads((root / "runs" / run_id / "run.json").read_text())
    assert record["status"] == "completed" and record["results"]["finished_trials"] == N_TRIALS


@pytest.mark.slow
def test_two_workers_on_sqlite_draw_distinct_settings_and_stop_at_n_trials(labelled_project):
    root, labelled = labelled_project
    workers = [worker(root, labelled, N_TRIALS), worker(root, labelled, N_TRIALS)]
    for w in workers:
        _finish(w)
    study = load(sqlite_url(root), labelled)
    finished = study.get_trials(states=FINISHED)
    assert N_TRIALS <= len(finished) <= N_TRIALS + 1  # one more at most, when both start the last at once
    assert not duplicate_settings(study)


def test_storage_url_with_a_password_is_refused_before_anything_is_written(tmp_path: Path):
    from quantnb.errors import ConfigError
    from quantnb.stages.optimization import OptimizationParams

    for url in ("postgresql+psycopg://quantnb:s3cr3t-pw@127.0.0.1:5432/optuna",
                "postgresql+psycopg://quantnb@127.0.0.1/optuna?password=s3cr3t-pw"):
        with pytest.raises(ConfigError, match="QUANTNB_OPTUNA_STORAGE_PASSWORD") as err:
            OptimizationParams.parse({"storage": url, "project_dir": str(tmp_path)})
        assert "s3cr3t-pw" not in str(err.value)
    ok = OptimizationParams.parse({"storage": "postgresql+psycopg://quantnb@127.0.0.1:5432/optuna"})
    assert ok.storage.endswith("/optuna")
    root = make_project(tmp_path / "proj")
    out = run_cli("run", "optimization", "-p", "storage", "postgresql+psycopg://quantnb:s3cr3t-pw@127.0.0.1/optuna",
                  cwd=root)
    assert out.returncode == 2 and "QUANTNB_OPTUNA_STORAGE_PASSWORD" in out.stderr
    assert "s3cr3t-pw" not in out.stdout + out.stderr and not (root / "runs").exists()


def test_a_trial_left_running_by_a_dead_worker_is_retried_with_its_setting(tmp_path: Path):
    """In-process check of the retry rules: a dead owner's RUNNING trial is failed and queued again."""
    import subprocess
    import sys

    from quantnb.classifier._study import (
        KEY_ATTR,
        KILLED_ATTR,
        OWNER_ATTR,
        recover_dead_trials,
        trial_key,
        worker_identity,
    )
    from quantnb.stages.optimization import open_study

    study = open_study("sqlite:///s.db", "retry", 0, 1, tmp_path)
    assert study.metric_names == ["f1_macro"]  # what optuna-dashboard shows
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for owner in ({**worker_identity(), "pid": dead.pid}, worker_identity()):  # a dead one, then this process
        t = study.ask()
        t.set_user_attr(OWNER_ATTR, owner)
        t.suggest_float("lr", 1e-4, 1e-2, log=True)
    assert recover_dead_trials(study) == [0]
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]
    assert trials[2].params == trials[0].params and trials[2].system_attrs["failed_trial"] == 0
    assert OWNER_ATTR not in trials[2].user_attrs and trials[2].user_attrs[KEY_ATTR] == 0
    assert recover_dead_trials(study) == []  # the live worker's trial is left alone, the retry is not repeated
    fresh = study.ask()  # takes the queued retry first
    assert fresh.number == 2 and fresh.params == trials[0].params
    new = study.ask()
    assert trial_key(study.get_trials(deepcopy=False), study.get_trials(deepcopy=False)[3]) == 2 == new.number - 1
    # a recovery killed between failing a trial and queuing its retry: the next recovery queues it
    orphan = study.ask()
    orphan.set_user_attr(OWNER_ATTR, {**worker_identity(), "pid": dead.pid})
    study._storage.set_trial_system_attr(orphan._trial_id, KILLED_ATTR, True)
    study.tell(orphan, state=TrialState.FAIL)
    assert recover_dead_trials(study) == [orphan.number]
    assert recover_dead_trials(study) == []
    (retry,) = [t for t in study.get_trials(deepcopy=False) if t.system_attrs.get("failed_trial") == orphan.number]
    assert retry.state == TrialState.WAITING and retry.user_attrs[KEY_ATTR] == 3


def test_a_small_finite_space_is_covered_without_repeats_and_its_size_caps_the_study(tmp_path: Path):
    import optuna

    from quantnb.classifier._study import TrialSeededSampler, space_size
    from quantnb.stages.optimization import _target_trials

    space = {"a": optuna.distributions.CategoricalDistribution([1, 2, 3]),
             "b": optuna.distributions.CategoricalDistribution(["x", "y"]),
             "c": optuna.distributions.FloatDistribution(0.5, 0.5)}
    assert space_size(space) == 6 and _target_trials(10, space) == 6 and _target_trials(4, space) == 4

    def run(seed: int) -> list[tuple]:
        study = optuna.create_study(sampler=TrialSeededSampler(seed, space))
        study.optimize(lambda t: t.suggest_categorical("a", [1, 2, 3]) + len(t.suggest_categorical("b", ["x", "y"]))
                       + t.suggest_float("c", 0.5, 0.5), n_trials=6)
        return [tuple(sorted(t.params.items())) for t in study.trials]

    settings = run(3)
    assert len(set(settings)) == 6  # every setting once, though random draws collide often in 6
    assert run(3) == settings and run(4) != settings  # the seed decides, nothing else


def test_a_trial_of_another_machine_is_retried_once_its_heartbeat_is_stale(tmp_path: Path):
    import warnings

    import optuna

    from quantnb.classifier._study import OWNER_ATTR, RetryKilledTrial, recover_dead_trials, worker_identity

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/h.db", heartbeat_interval=1, grace_period=1,
                                             heartbeat_stale_trial_callback=RetryKilledTrial())
        study = optuna.create_study(storage=storage)
        trial = study.ask()
    trial.set_user_attr(OWNER_ATTR, {**worker_identity(), "host": "another-machine"})
    trial.suggest_int("n", 1, 9)
    storage.record_heartbeat(trial._trial_id)
    assert recover_dead_trials(study) == []  # not ours to judge by pid: its heartbeat is fresh
    time.sleep(2.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)  # what Study.optimize runs before each trial
    first, retry = study.get_trials(deepcopy=False)
    assert first.state == TrialState.FAIL and retry.state == TrialState.WAITING
    assert retry.params == first.params and retry.system_attrs["failed_trial"] == 0
