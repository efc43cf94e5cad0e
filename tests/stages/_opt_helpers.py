"""Helpers of the optimization kill/worker tests: start workers, kill process trees, read studies."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import psutil
from optuna.trial import TrialState

from tests.conftest import QUANTNB

CHILD = Path(__file__).with_name("_opt_child.py")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# the CLI spelling of _opt_child.SMALL_STUDY
SMALL_STUDY_CLI = ["-p", "epochs_per_trial", "1", "-p", "tcn_channels", "[4, 8]", "-p", "lstm_hidden", "[8]",
                   "-p", "seq_len", "[8, 16]", "-p", "batch_size", "[512]", "-p", "pruner_startup_trials", "1",
                   "-p", "num_threads", "1"]


def sqlite_url(root: Path) -> str:
    return f"sqlite:///{root}/runs/optuna/optuna.db"


def study_name(labelled: str) -> str:
    return f"tcnlstm_{Path(labelled).name}"


def load(storage: Any, labelled: str, name: str | None = None) -> optuna.Study | None:
    """The study (``storage``: a URL or an Optuna storage), or None while it does not exist yet."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        return optuna.load_study(study_name=name or study_name(labelled), storage=storage)
    except Exception:  # noqa: BLE001 - not created yet, schema being created, database locked
        return None


def worker(root: Path, labelled: str, n_trials: int, *extra: str, env: dict[str, str] | None = None
           ) -> subprocess.Popen:
    """One optimization worker process (tests/stages/_opt_child.py), in its own process group."""
    return subprocess.Popen([sys.executable, str(CHILD), str(root), labelled, str(n_trials), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, **(env or {})})


def cli(root: Path, *args: str) -> subprocess.Popen:
    """``quantnb run optimization ARGS`` in its own session, output to files under the project."""
    out = open(root / f"cli_{time.monotonic_ns()}.out", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([QUANTNB, "run", "optimization", *args], cwd=root, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant (the kernel runs in a session of its own), all at once."""
    try:
        parent = psutil.Process(pid)
        procs = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in procs:  # stop first, so nothing reacts to its children dying
        try:
            p.suspend()
        except psutil.NoSuchProcess:
            pass
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)


def wait_for_running_trial(storage: str, labelled: str, number: int, proc: subprocess.Popen,
                           timeout_s: float = 240) -> bool:
    """Wait until trial ``number`` (or a later one) exists; False if ``proc`` ended first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        study = load(storage, labelled)
        if study is not None and any(t.number >= number for t in study.get_trials(deepcopy=False)):
            return True
        time.sleep(0.05)
    return False


def outcome(study: optuna.Study) -> Counter:
    """What two studies must share to have "the same finished trials": the multiset of
    (parameters, value, state) of the COMPLETE and PRUNED trials (numbers differ when a killed
    trial was retried under a new number; FAIL trials are not counted)."""
    return Counter((tuple(sorted(t.params.items())), t.value, t.state.name)
                   for t in study.get_trials(deepcopy=False, states=FINISHED))


def duplicate_settings(study: optuna.Study) -> list[Any]:
    """Settings shared by two trials that are not FAIL (a FAIL trial's retry repeats it by design)."""
    seen = Counter(tuple(sorted(t.params.items())) for t in study.get_trials(deepcopy=False)
                   if t.state != TrialState.FAIL and t.params)
    return [s for s, n in seen.items() if n > 1]
