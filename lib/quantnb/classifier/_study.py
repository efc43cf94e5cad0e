"""Optuna plumbing of the optimization stage: storage (:func:`open_study`), a reproducible sampler, retries.

What makes a study reproducible under kills and shareable by several workers:

* **Trial key.** Every trial has a key: a fresh trial's key is its number minus the retries
  created before it (so an uninterrupted study has key == number), a retry carries the key of the
  trial it retries. The key, not the number, seeds the sampler and the trial's training.
* **Sampler.** :class:`TrialSeededSampler` draws each trial's whole setting from a TPE sampler
  seeded with ``(seed, key)``: the same history gives the same setting whatever ran, died or was
  retried before, and two workers never share a random stream. A setting equal to one of another
  live or finished trial is drawn again (a finite space is enumerated when draws keep colliding).
* **Retries.** A RUNNING trial whose worker is dead (same host: its pid is gone; another host:
  Optuna's heartbeat is older than the grace period) is marked FAIL and re-enqueued as a WAITING
  trial with its own parameters (:class:`RetryKilledTrial`, the attributes of Optuna's
  ``RetryHeartbeatStaleTrialCallback``), which the next worker picks up first. Every worker of a
  study must therefore be a quantnb worker: a trial with no worker identity that has run longer
  than the grace period is taken for one whose worker died before writing it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import os
import socket
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import psutil
from loguru import logger
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from quantnb._secrets import refuse_password_in_url
from quantnb.errors import ConfigError

__all__ = ["open_study", "OWNER_ATTR", "KEY_ATTR", "KILLED_ATTR", "PASSWORD_ENV", "TrialSeededSampler",
           "RetryKilledTrial", "trial_key", "recover_dead_trials", "check_storage_url", "server_kwargs",
           "refuse_password_error", "finished_outcome", "space_size", "worker_identity"]

OWNER_ATTR = "worker"      # user attr: host, boot time, pid and pid start time of the process running the trial
KEY_ATTR = "trial_key"     # user attr: the trial's identity (see the module docstring)
KILLED_ATTR = "quantnb:killed"  # system attr: failed because its worker died (set before the FAIL)
PASSWORD_ENV = "QUANTNB_OPTUNA_STORAGE_PASSWORD"
HEARTBEAT_INTERVAL_S = 5  # what _rdb_storage sets
# heartbeat age after which a trial of another machine is taken as dead (long: a loaded machine may delay
# a heartbeat); also the age of a trial without a worker identity taken as dead
GRACE_PERIOD_S = 60
MAX_RETRIES = 3
_LIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


# -- storage -----------------------------------------------------------------------------
def check_storage_url(storage: str) -> str:
    """Refuse a storage URL that carries a password; return it unchanged otherwise.

    The password comes from the environment (:data:`PASSWORD_ENV`, or libpq's ``PGPASSWORD`` /
    ``~/.pgpass``). The ConfigError is a ``ValueError`` too, so a pydantic validator reports it.

    Parameters
    ----------
    storage : str
        Optuna storage URL, e.g. ``sqlite:///optuna.db`` or ``postgresql://user@host/db``.

    Raises
    ------
    ConfigError
        If the URL holds a password.
    """
    return refuse_password_in_url(storage, what="the storage URL", env=f"{PASSWORD_ENV} (or PGPASSWORD)")


def server_kwargs(url: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Add to RDBStorage ``kwargs`` what a server database needs."""
    if not url.startswith("sqlite"):
        engine = kwargs.setdefault("engine_kwargs", {})
        engine.setdefault("pool_pre_ping", True)
        if os.environ.get(PASSWORD_ENV):
            engine.setdefault("connect_args", {})["password"] = os.environ[PASSWORD_ENV]
    return kwargs


def refuse_password_error(url: str, exc: Exception) -> None:
    """Raise :class:`ConfigError` if ``exc`` says the server wants a (another) password: retrying won't help."""
    if "password" in str(exc).lower():
        raise ConfigError(
            f"storage {url}: the database refused the connection ({str(exc).splitlines()[0][-160:]}); "
            f"set {PASSWORD_ENV} (or PGPASSWORD) to the database user's password") from None


def open_study(storage: str, study_name: str, seed: int, startup_trials: int, root: Path,
               space: dict[str, optuna.distributions.BaseDistribution] | None = None) -> optuna.Study:
    """Create or load a study with a :class:`~quantnb.classifier._study.TrialSeededSampler` and a MedianPruner.

    Parameters
    ----------
    storage : str
        ``sqlite:///relative/path.db`` (resolved against ``root``), any SQLAlchemy URL (for
        PostgreSQL ``postgresql+psycopg://user@host:5432/db``, its password in the environment:
        ``QUANTNB_OPTUNA_STORAGE_PASSWORD`` or ``PGPASSWORD``), or a journal file path ending in
        ``.log`` or ``.jsonl``.
    study_name : str
        Loaded if it exists.
    seed : int
        Sampler seed; each trial draws from ``(seed, trial key)``.
    startup_trials : int
        Trials the MedianPruner waits for before pruning.
    root : pathlib.Path
        Project directory.
    space : dict of str to BaseDistribution, optional
        The whole search space (:func:`search_space`), drawn at once per trial so that no
        setting repeats; without it the sampler draws parameter by parameter.

    Returns
    -------
    optuna.Study
        Direction ``maximize`` (validation F1 macro).

    Raises
    ------
    ConfigError
        If ``storage`` carries a password.
    """
    try:
        check_storage_url(storage)
    except ValueError as exc:
        raise ConfigError(f"storage: {exc}") from None
    if storage.endswith((".log", ".jsonl")) and "://" not in storage:
        path = root / storage
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = JournalFileBackend(str(path))
        store: Any = optuna.storages.JournalStorage(backend)
    else:
        kwargs: dict[str, Any] = {}
        if storage.startswith("sqlite:///") and not storage.startswith("sqlite:////"):
            db = root / storage.removeprefix("sqlite:///")
            db.parent.mkdir(parents=True, exist_ok=True)
            storage = f"sqlite:///{db}"
            kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
        store = _rdb_storage(storage, server_kwargs(storage, kwargs))
    study = optuna.create_study(
        study_name=study_name, storage=store, direction="maximize", load_if_exists=True,
        sampler=TrialSeededSampler(seed, space or {}),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=0),
    )
    if study.metric_names != ["f1_macro"]:
        with warnings.catch_warnings():  # "experimental" in Optuna 5
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["f1_macro"])
    return study


def _rdb_storage(url: str, kwargs: dict[str, Any], attempts: int = 5) -> optuna.storages.RDBStorage:
    """Open an RDB storage; retry while another worker is creating the same schema (they race).

    Heartbeats every 5 s; a trial whose heartbeat is 60 s old is failed and queued again with its own
    parameters (:class:`RetryKilledTrial`).
    """
    import sqlalchemy.exc

    for attempt in range(1, attempts + 1):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5; we rely on them knowingly
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, heartbeat_interval=HEARTBEAT_INTERVAL_S, grace_period=GRACE_PERIOD_S,
                    heartbeat_stale_trial_callback=RetryKilledTrial(), **kwargs)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            refuse_password_error(url, exc)
            if attempt == attempts:
                raise
            logger.warning("Storage not ready ({}: {}); retry {}/{}", type(exc).__name__,
                           str(exc).splitlines()[0][:120], attempt, attempts - 1)
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


# -- trial identity ----------------------------------------------------------------------
def trial_key(trials: Sequence[FrozenTrial], trial: FrozenTrial) -> int:
    """Return ``trial``'s key: its original's key for a retry, else its number minus earlier retries.

    Parameters
    ----------
    trials, trial : sequence of FrozenTrial, FrozenTrial
        The study's trials (at least those before ``trial``), and the trial to key.
    """
    if KEY_ATTR in trial.user_attrs:
        return int(trial.user_attrs[KEY_ATTR])
    original = trial.system_attrs.get("failed_trial")
    if original is not None and original != trial.number:
        by_number = {t.number: t for t in trials}
        if original in by_number:
            return trial_key(trials, by_number[original])
    return trial.number - sum(1 for t in trials if t.number < trial.number and "failed_trial" in t.system_attrs)


def worker_identity() -> dict[str, Any]:
    """Return what identifies this process across hosts and pid reuse."""
    proc = psutil.Process()
    return {"host": socket.gethostname(), "boot_time": psutil.boot_time(), "pid": proc.pid,
            "pid_create_time": proc.create_time()}


def _owner_dead(trial: FrozenTrial, grace_s: float) -> bool:
    owner = trial.user_attrs.get(OWNER_ATTR)
    if not owner:  # killed between the trial's creation and its first line: nothing else ever recovers it
        start = trial.datetime_start
        return start is not None and (dt.datetime.now() - start).total_seconds() > grace_s
    if owner.get("host") != socket.gethostname():
        return False  # another machine's worker: Optuna's heartbeat decides (fail_stale_trials)
    if abs(float(owner.get("boot_time", 0)) - psutil.boot_time()) > 1:
        return True  # this machine rebooted since
    try:
        return abs(psutil.Process(int(owner["pid"])).create_time() - float(owner["pid_create_time"])) > 0.01
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:  # e.g. AccessDenied: the process exists
        return False


class RetryKilledTrial:
    """Re-enqueue a trial whose worker died, with its own parameters, as a WAITING trial.

    Same attributes as Optuna's ``RetryHeartbeatStaleTrialCallback`` (``failed_trial``,
    ``retry_history``), so Optuna's helpers read them; the trial key is kept. A trial retried
    ``max_retry`` times (e.g. one that kills its worker by running out of memory) stays FAIL.
    """

    def __init__(self, max_retry: int = MAX_RETRIES):
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        history = [*trial.system_attrs.get("retry_history", []), trial.number]
        if len(history) > self.max_retry:
            logger.error("Trial {} was killed {} times with {}; not retried again", trial.number, len(history),
                         trial.params)
            return
        system_attrs = {**{k: v for k, v in trial.system_attrs.items()
                           if not k.startswith("tpe:") and k != KILLED_ATTR},
                        "failed_trial": trial.system_attrs.get("failed_trial", trial.number),
                        "retry_history": history}
        user_attrs = {k: v for k, v in trial.user_attrs.items() if k != OWNER_ATTR}
        user_attrs.setdefault(KEY_ATTR, trial_key(study.get_trials(deepcopy=False), trial))
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
            user_attrs=user_attrs, system_attrs=system_attrs))
        logger.warning("Trial {} was left running by a dead worker: failed, and queued again with its own "
                       "parameters {} (key {})", trial.number, trial.params, user_attrs[KEY_ATTR])


def recover_dead_trials(study: optuna.Study, grace_s: float = GRACE_PERIOD_S,
                        retry: RetryKilledTrial | None = None) -> list[int]:
    """Fail the RUNNING trials whose worker is dead and queue a retry of each; return their numbers.

    Safe with several workers: only the one whose FAIL is stored first queues the retry. The trial is
    marked ``KILLED_ATTR`` before it is failed, so a recovery killed between the FAIL and the retry is
    completed by the next one.

    Parameters
    ----------
    study : optuna.Study
        The study whose RUNNING (and killed FAIL) trials are checked.
    grace_s : float, default 60
        Age, seconds, after which a trial without a worker identity is taken as dead.
    retry : RetryKilledTrial, optional
        What queues the retries; default ``RetryKilledTrial()``.
    """
    retry = retry or RetryKilledTrial()
    recovered = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _owner_dead(t, grace_s):
            continue
        study._storage.set_trial_system_attr(t._trial_id, KILLED_ATTR, True)
        try:
            study.tell(t.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker got there first (or the trial just finished)
        retry(study, _frozen(study, t.number))
        recovered.append(t.number)
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    for t in trials:  # a FAIL left by a recovery that was itself killed before queuing the retry
        if (t.state == TrialState.FAIL and t.system_attrs.get(KILLED_ATTR) and t.number not in retried
                and len(t.system_attrs.get("retry_history", [])) < retry.max_retry):
            retry(study, _frozen(study, t.number))
            recovered.append(t.number)
    return recovered


def _frozen(study: optuna.Study, number: int) -> FrozenTrial:
    return next(u for u in study.get_trials(deepcopy=True) if u.number == number)


# -- the sampler ---------------------------------------------------------------------------
def _derive_seed(*parts: int) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _canon(params: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


def space_size(space: dict[str, BaseDistribution]) -> int | None:
    """Return how many distinct settings ``space`` holds, or None if it is continuous.

    Parameters
    ----------
    space : dict of str to BaseDistribution
        Optuna search space; a log-scaled integer counts as continuous.
    """
    size = 1
    for dist in space.values():
        if dist.single():
            continue
        if isinstance(dist, CategoricalDistribution):
            size *= len(dist.choices)
        elif isinstance(dist, IntDistribution) and not dist.log:
            size *= (dist.high - dist.low) // dist.step + 1
        else:
            return None
    return size


def _int_range(dist: BaseDistribution) -> list[int]:
    """Every value of a finite integer distribution (what :func:`space_size` counted)."""
    assert isinstance(dist, IntDistribution)  # space_size returned a size: the space is finite
    return list(range(dist.low, dist.high + 1, dist.step))


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """TPE whose randomness comes from ``(seed, trial key)`` and that does not repeat a setting."""

    def __init__(self, seed: int, space: dict[str, BaseDistribution], max_draws: int = 16):
        self.seed, self.space, self.max_draws = seed, dict(space), max_draws

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """Return the declared space (its single-valued parameters left to Optuna)."""
        return {k: d for k, d in self.space.items() if not d.single()}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        """Draw the whole setting of ``trial`` at once (see :meth:`draw`)."""
        if not search_space:
            return {}
        setting = self.draw(study, trial)
        return {k: setting[k] for k in search_space}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        """Sample a parameter outside the declared space (not used by the stage) from the trial's TPE."""
        return self._tpe(trial.number, 0).sample_independent(study, trial, param_name, param_distribution)

    def _tpe(self, key: int, draw: int) -> optuna.samplers.TPESampler:
        return optuna.samplers.TPESampler(seed=_derive_seed(self.seed, key, draw))

    def draw(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        """Return a setting for ``trial`` that no other live or finished trial has.

        Deterministic given the study's history: draw ``d`` uses a TPE seeded from ``(seed, key, d)``;
        after ``max_draws`` collisions a finite space is enumerated from a seeded offset; an exhausted
        space returns the last draw (a WARNING).
        """
        trials = study.get_trials(deepcopy=False)
        key = trial_key(trials, trial)
        taken = {_canon(t.params) for t in trials if t.state in _LIVE and t.number != trial.number
                 and set(self.space) <= set(t.params)}
        setting: dict[str, Any] = {}
        for d in range(self.max_draws):
            tpe = self._tpe(key, d)
            relative = tpe.infer_relative_search_space(study, trial)
            setting = tpe.sample_relative(study, trial, {k: v for k, v in relative.items() if k in self.space})
            for name, dist in self.space.items():
                if name not in setting:
                    setting[name] = (optuna.distributions._get_single_value(dist) if dist.single()
                                     else tpe.sample_independent(study, trial, name, dist))
            setting = {**setting, **trial.params}
            if _canon(setting) not in taken:
                return setting
        if space_size(self.space) is not None:
            names = list(self.space)
            values = [[optuna.distributions._get_single_value(d)] if d.single() else
                      list(d.choices) if isinstance(d, CategoricalDistribution) else
                      _int_range(d) for d in self.space.values()]
            combos = [dict(zip(names, c, strict=True)) for c in itertools.product(*values)]
            free = [c for c in combos if all(c[k] == v for k, v in trial.params.items() if k in c)
                    and _canon(c) not in taken]
            if free:
                return free[_derive_seed(self.seed, key, -1) % len(free)]
        logger.warning("Trial {}: every setting drawn is taken; the search space looks exhausted, running {} again",
                       trial.number, setting)
        return setting


def finished_outcome(study: optuna.Study) -> list[dict[str, Any]]:
    """Return what "the same finished trials" means for a study: one row per COMPLETE/PRUNED trial.

    Each row is ``{"key", "params", "value", "state"}``, sorted by key. The trial *number* is
    left out on purpose: a trial killed and retried is FAIL under its old number and finishes
    under a new one, with the same key, parameters and value. Two studies (one killed and
    resumed, one uninterrupted, same seed) have ended the same when these lists are equal; the
    FAIL trials of a killed worker are not in the list, so they are not counted.

    Parameters
    ----------
    study : optuna.Study
        The study.
    """
    trials = study.get_trials(deepcopy=False)
    rows = [{"key": trial_key(trials, t), "params": dict(sorted(t.params.items())), "value": t.value,
             "state": t.state.name} for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    return sorted(rows, key=lambda r: r["key"])
