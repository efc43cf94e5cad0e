"""Optuna studies on a real PostgreSQL server (issue 11): shared by worker processes, a killed one retried."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.stages._opt_helpers import FINISHED, duplicate_settings, kill_tree, load, worker

N_TRIALS = 5


def _storage(pg) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(pg.url(), engine_kwargs={"connect_args": {"password": pg.password}})


def _files_containing(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()
            and needle.encode() in p.read_bytes()]


@pytest.mark.slow
def test_two_workers_on_postgres_reach_n_trials_with_distinct_settings_and_retry_a_killed_workers_trial(
        labelled_project, postgres):
    root, labelled = labelled_project
    name = "pg_two_workers"
    args = (f"storage={postgres.url()}", f"study_name={name}")
    env = {"QUANTNB_OPTUNA_STORAGE_PASSWORD": postgres.password}  # the URL carries no password
    victim, survivor = worker(root, labelled, N_TRIALS, *args, env=env), worker(root, labelled, N_TRIALS, *args,
                                                                                 env=env)
    storage, killed = _storage(postgres), None
    deadline = time.monotonic() + 240
    while killed is None and time.monotonic() < deadline and victim.poll() is None:
        study = load(storage, labelled, name)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if study else []:
            if t.user_attrs.get("worker", {}).get("pid") == victim.pid and len(t.params) == 6:
                kill_tree(victim.pid)  # mid-trial: its setting is drawn, its training not finished
                killed = t.number
                break
        time.sleep(0.05)
    assert killed is not None, "the victim never ran a trial"
    _, err = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, err.decode()[-3000:]

    trials = {t.number: t for t in load(storage, labelled, name).get_trials(deepcopy=False)}
    assert trials[killed].state == TrialState.FAIL
    (retry,) = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed]
    assert retry.params == trials[killed].params and retry.state in FINISHED  # its own setting, run to the end
    assert retry.user_attrs["trial_key"] == trials[killed].user_attrs["trial_key"]
    finished = [t for t in trials.values() if t.state in FINISHED]
    assert N_TRIALS <= len(finished) <= N_TRIALS + 1
    assert not duplicate_settings(load(storage, labelled, name))
    assert not [t for t in trials.values() if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert not _files_containing(root, postgres.password), "the database password reached a file"


def test_postgres_storage_without_the_password_in_the_environment_is_a_clear_config_error(
        tmp_path: Path, postgres, monkeypatch):
    from quantnb.errors import ConfigError
    from quantnb.stages.optimization import open_study

    for var in ("QUANTNB_OPTUNA_STORAGE_PASSWORD", "PGPASSWORD", "PGPASSFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    with pytest.raises(ConfigError, match="QUANTNB_OPTUNA_STORAGE_PASSWORD"):
        open_study(postgres.url(), "pg_no_password", 0, 1, tmp_path)
    monkeypatch.setenv("QUANTNB_OPTUNA_STORAGE_PASSWORD", postgres.password)
    study = open_study(postgres.url(), "pg_no_password", 0, 1, tmp_path)
    assert study.metric_names == ["f1_macro"]
