"""Optimization stage: an Optuna search, with pruning, over the hybrid TCN-LSTM classifier.

The study lives in ``storage`` (SQLite by default, any SQLAlchemy URL such as PostgreSQL's
``postgresql+psycopg://user@host/db``, or an Optuna journal file ending in ``.log``/``.jsonl``)
under a name derived from the label suffix, and is loaded if it exists. Each trial reports
validation F1 macro every epoch, so the MedianPruner stops weak trials early.

Kills and several workers (the rules are in :mod:`quantnb.classifier._study`):

* a study killed at any point (runner, kernel, workers) and resumed, or run again with the same
  parameters, ends with the same finished trials as an uninterrupted one: settings are drawn from
  ``(seed, trial key)``, a trial left RUNNING by a dead worker is failed and retried with its own
  parameters, and training is seeded by the trial key, which a retry keeps
  (:func:`~quantnb.classifier._study.finished_outcome` is what "the same" compares);
* several processes (or machines) on one storage and study name share it: no two trials get the
  same setting while the space has others, and the study stops at ``n_trials`` finished trials
  (one more at most when two workers start their last trial at the same instant).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

import optuna
from loguru import logger
from optuna.trial import TrialState
from pydantic import Field, PositiveFloat, PositiveInt, field_validator, model_validator

from quantnb.classifier import (
    KEY_ATTR,
    OWNER_ATTR,
    ModelConfig,
    TrainConfig,
    check_storage_url,
    finished_outcome,
    load_labelled,
    open_study,
    recover_dead_trials,
    space_size,
    trial_key,
    worker_identity,
)
from quantnb.display import HtmlResult
from quantnb.errors import ConfigError, QuantnbError
from quantnb.evaluation import cpcv_path_count, cpcv_split_count
from quantnb.runs import RunContext, atomic_write_json, is_interrupt, optuna_dir, start_run
from quantnb.stages._cv import (
    FOLD_SCORES_ATTR,
    PATH_SCORES_ATTR,
    SPLIT_SCORES_ATTR,
    CvFold,
    cv_datasets,
    pbo_of_study,
)
from quantnb.stages._links import LabelledDataParams, SampleWeightCol, record_labelled_span

if TYPE_CHECKING:
    from quantnb.classifier import PreparedData

__all__ = ["OptimizationParams", "OptimizationResult", "run_optimization", "open_study", "search_space",
           "check_study_compatible", "finished_outcome"]

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class OptimizationParams(LabelledDataParams):
    """Parameters of the optimization stage; list-valued fields are the categorical search space."""

    stage = "optimization"
    storage: str = Field("sqlite:///runs/optuna/optuna.db",
                         description="SQLAlchemy URL (relative sqlite paths from the project) or a journal file; "
                                     "no password in it: QUANTNB_OPTUNA_STORAGE_PASSWORD or PGPASSWORD.")
    study_name: str | None = Field(None, description="Default: tcnlstm_<label suffix>.")
    n_trials: PositiveInt = Field(6, description="Finished (complete or pruned) trials the study should reach.")
    timeout_s: PositiveFloat | None = Field(None, description="Stop starting trials after this many seconds.")
    seed: int = Field(TrainConfig.seed, ge=0,
                      description="Seed of the sampler and of each trial's training (with the trial key).")
    epochs_per_trial: PositiveInt = Field(3, description="Maximum epochs of one trial.")
    patience: PositiveInt = Field(2, description="Early-stopping patience inside a trial, epochs.")
    train_frac: float = Field(0.7, gt=0, lt=1, description="Chronological train fraction.")
    val_frac: float = Field(0.15, gt=0, lt=1, description="Chronological validation fraction.")
    tcn_channels: list[PositiveInt] = Field([16, 32], description="Choices of TCN channels.")
    lstm_hidden: list[PositiveInt] = Field([16, 32], description="Choices of LSTM hidden size.")
    seq_len: list[PositiveInt] = Field([30, 60], description="Choices of window length, minutes.")
    batch_size: list[PositiveInt] = Field([256, 512], description="Choices of batch size.")
    lr_min: PositiveFloat = Field(3e-4, description="Learning-rate range, log scale.")
    lr_max: PositiveFloat = Field(3e-3, description="Learning-rate range, log scale.")
    dropout_min: float = Field(0.0, ge=0, lt=1, description="Dropout range.")
    dropout_max: float = Field(0.3, ge=0, lt=1, description="Dropout range.")
    kernel_size: PositiveInt = Field(ModelConfig.kernel_size, description="Fixed TCN kernel size.")
    n_blocks: PositiveInt = Field(ModelConfig.n_blocks,
                                  description="Fixed number of TCN residual blocks.")
    lstm_layers: PositiveInt = Field(ModelConfig.lstm_layers, description="Fixed LSTM layers.")
    pruner_startup_trials: int = Field(2, ge=0, description="Trials before the MedianPruner may prune.")
    num_threads: PositiveInt | None = Field(
        1, description="torch threads per trial; 1 (the default) is fastest for these small models, 2-5x faster "
                       "than torch's default on a busy 2-core machine; None keeps torch's.")
    cv_folds: PositiveInt = Field(
        1, description="Purged k-fold folds over train + validation for the objective (mean F1 macro over folds, "
                       "early stopping on an inner split) and the PBO; even. 1: the single validation split, no PBO.")
    cv_mode: Literal["purged_kfold", "cpcv"] = Field(
        "purged_kfold", description="purged_kfold: cv_folds folds (1: the single validation split); cpcv: "
                                    "combinatorial purged CV, C(cv_groups, cv_test_groups) splits.")
    cv_groups: PositiveInt = Field(
        6, description="cpcv: contiguous groups N of train + validation; PBO (CSCV) over the groups needs N even.")
    cv_test_groups: PositiveInt = Field(2, description="cpcv: groups k tested per split, 1 <= k < cv_groups.")
    sample_weight_col: SampleWeightCol = Field(
        None, description="Weigh each window's loss in every trial by its label's AFML uniqueness or "
                          "return-attribution weight (columns of the labelling stage), as training does; None: "
                          "unweighted.")

    @field_validator("cv_folds")
    @classmethod
    def _even_folds(cls, value: int) -> int:
        if value != 1 and value % 2:
            raise ValueError(f"cv_folds={value}: give 1 or an even number (CSCV splits the folds into halves)")
        return value

    @model_validator(mode="after")
    def _cpcv_fields(self) -> Self:
        if self.cv_mode == "cpcv":
            if self.cv_folds != 1:
                raise ValueError(f"cv_folds={self.cv_folds} with cv_mode='cpcv': cv_folds sets the purged k-fold; "
                                 "give cv_groups and cv_test_groups for cpcv (and leave cv_folds at 1)")
            if self.cv_groups < 2 or not 1 <= self.cv_test_groups < self.cv_groups:
                raise ValueError(f"cv_groups={self.cv_groups}, cv_test_groups={self.cv_test_groups}: need "
                                 "cv_groups >= 2 and 1 <= cv_test_groups < cv_groups (e.g. 6 and 2: 15 splits)")
        return self

    def uses_cv(self) -> bool:
        """Return whether the objective is cross-validated (purged k-fold with ``cv_folds > 1``, or CPCV)."""
        return self.cv_mode == "cpcv" or self.cv_folds > 1

    def pbo_columns(self) -> int:
        """Return the columns of the trial x column matrix the PBO is computed on: folds, or CPCV groups."""
        return self.cv_groups if self.cv_mode == "cpcv" else self.cv_folds

    @field_validator("storage")
    @classmethod
    def _no_password_in_storage(cls, value: str) -> str:
        return check_storage_url(value)

    def resolved_study_name(self) -> str:
        """Return ``study_name`` or ``tcnlstm_<label suffix>``."""
        return self.study_name or f"tcnlstm_{self.run_suffix()}"


@dataclasses.dataclass
class OptimizationResult(HtmlResult):
    """Best trial of the study and where its parameters were written."""

    run_id: str
    study_name: str
    best_value: float
    best_params: dict[str, Any]
    best_params_path: Path
    trials: Any  # polars.DataFrame of every trial: number, state, value, params
    selection: dict[str, Any] = dataclasses.field(default_factory=dict)  # n_trials, pbo, cv_folds, fold scores

    def summary(self) -> Any:
        """Print the best trial; return the trials table."""
        print(f"Study {self.study_name}: best val F1 macro {self.best_value:.4f} with {self.best_params}")
        print(f"Best parameters: {self.best_params_path}")
        if self.selection:
            pbo = self.selection.get("pbo")
            print(f"Selected from {self.selection.get('n_trials')} trials; probability of backtest overfitting: "
                  + (f"{pbo:.2f} (CSCV over {self.selection.get('pbo_columns')} {_columns_word(self.selection)})"
                     if pbo is not None else "not measured (needs cv_folds >= 2, or cpcv with an even cv_groups)"))
        return self.trials


def search_space(params: OptimizationParams) -> dict[str, optuna.distributions.BaseDistribution]:
    """Return the Optuna distributions the trials sample from, by parameter name.

    Parameters
    ----------
    params : OptimizationParams
        The stage's parameters (their ``*_min``/``*_max``/``*_choices`` fields).

    Returns
    -------
    dict of str to optuna.distributions.BaseDistribution
    """
    dist = optuna.distributions
    return {
        "tcn_channels": dist.CategoricalDistribution(params.tcn_channels),
        "lstm_hidden": dist.CategoricalDistribution(params.lstm_hidden),
        "seq_len": dist.CategoricalDistribution(params.seq_len),
        "lr": dist.FloatDistribution(params.lr_min, params.lr_max, log=True),
        "dropout": dist.FloatDistribution(params.dropout_min, params.dropout_max),
        "batch_size": dist.CategoricalDistribution(params.batch_size),
    }


def _trial_model(p: OptimizationParams, hp: dict[str, Any]) -> ModelConfig:
    """Return the architecture of a trial: its sampled choices and the study's fixed values."""
    return ModelConfig(tcn_channels=hp["tcn_channels"], kernel_size=p.kernel_size, n_blocks=p.n_blocks,
                       dropout=hp["dropout"], lstm_hidden=hp["lstm_hidden"], lstm_layers=p.lstm_layers)


def _trial_train(p: OptimizationParams, hp: dict[str, Any], key: int) -> TrainConfig:
    """Return a trial's trainer settings (budget ``epochs_per_trial``, ``patience``), seeded by the trial key."""
    return TrainConfig(epochs=p.epochs_per_trial, batch_size=hp["batch_size"], lr=hp["lr"], patience=p.patience,
                       seed=p.seed + key, num_threads=p.num_threads)


def _fixed_settings(params: OptimizationParams) -> dict[str, Any]:
    keys = ("kernel_size", "n_blocks", "lstm_layers", "epochs_per_trial", "patience", "train_frac", "val_frac",
            "labelled_dir") + (("cv_folds",) if params.cv_folds != 1 else ())  # studies from before cv_folds load
    keys += ("cv_mode", "cv_groups", "cv_test_groups") if params.cv_mode == "cpcv" else ()  # likewise
    keys += ("sample_weight_col",) if params.sample_weight_col else ()
    return {k: getattr(params, k) for k in keys}


def _columns_word(selection: dict[str, Any]) -> str:
    return "groups" if selection.get("cv_mode") == "cpcv" else "folds"


def check_study_compatible(study: optuna.Study, params: OptimizationParams) -> None:
    """Refuse to add trials to a study whose earlier trials used another search space or settings.

    Parameters
    ----------
    study : optuna.Study
        The loaded study.
    params : OptimizationParams
        This run's parameters.

    Raises
    ------
    ConfigError
        Naming the first differing parameter, its stored and requested values, and the fix.
    """
    wanted = search_space(params)
    for trial in study.get_trials(deepcopy=False):
        for name, stored in trial.distributions.items():
            if name in wanted and stored != wanted[name]:
                raise ConfigError(
                    f"study {study.study_name!r}: trial {trial.number} sampled {name} from {stored}, this run asks "
                    f"{wanted[name]}; keep the study's search space, or pass a new study_name for the new one")
    fixed = json.loads(json.dumps(_fixed_settings(params)))
    stored_fixed = study.user_attrs.get("fixed_settings")
    if stored_fixed is None:
        study.set_user_attr("fixed_settings", fixed)
    elif stored_fixed != fixed:
        diff = {k: (stored_fixed.get(k), v) for k, v in fixed.items() if stored_fixed.get(k) != v}
        raise ConfigError(f"study {study.study_name!r} was run with other fixed settings (stored, requested): "
                          f"{diff}; use the same settings or pass a new study_name")


class _Objective:
    def __init__(self, params: OptimizationParams, ctx: RunContext, labelled: Any, lookahead_min: int):
        self.p, self.ctx, self.labelled, self.lookahead_min = params, ctx, labelled, lookahead_min
        self._data: dict[int, PreparedData] = {}
        self._folds: dict[int, list[CvFold]] = {}

    def data(self, seq_len: int) -> PreparedData:
        from quantnb.classifier import prepare_datasets  # torch: loaded by the run, not by parameter validation

        if seq_len not in self._data:
            self._data[seq_len] = prepare_datasets(self.labelled, seq_len=seq_len, train_frac=self.p.train_frac,
                                                   val_frac=self.p.val_frac, lookahead_min=self.lookahead_min,
                                                   weight_col=self.p.sample_weight_col)
        return self._data[seq_len]

    def folds(self, seq_len: int) -> list[CvFold]:
        if seq_len not in self._folds:
            cpcv = self.p.cv_mode == "cpcv"
            self._folds[seq_len] = cv_datasets(self.data(seq_len), n_folds=self.p.pbo_columns(),
                                               lookahead_min=self.lookahead_min,
                                               n_test_groups=self.p.cv_test_groups if cpcv else None,
                                               weight_col=self.p.sample_weight_col)
        return self._folds[seq_len]

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, dist in search_space(self.p).items():
            if isinstance(dist, optuna.distributions.CategoricalDistribution):
                out[name] = trial.suggest_categorical(name, list(dist.choices))
            else:
                assert isinstance(dist, optuna.distributions.FloatDistribution)  # search_space has no other kind
                out[name] = trial.suggest_float(name, dist.low, dist.high, log=dist.log)
        return out

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr(OWNER_ATTR, worker_identity())  # first: a dead worker's trial is found by this
        trials = trial.study.get_trials(deepcopy=False)
        frozen = next(t for t in trials if t.number == trial.number)
        key = trial_key(trials, frozen)
        trial.set_user_attr(KEY_ATTR, key)
        hp = self.sample(trial)
        retry_of = frozen.system_attrs.get("failed_trial")
        logger.debug("Trial {} started (key {}{}): {}", trial.number, key,
                    f", retry of trial {retry_of}" if retry_of is not None else "", hp)
        try:
            return self._train_cv(trial, hp, key) if self.p.uses_cv() else self._train(trial, hp, key)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            if is_interrupt(exc):  # a signal that surfaced through C code stops the study, not one trial
                raise KeyboardInterrupt(f"interrupted in trial {trial.number}") from exc
            if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
                import torch

                torch.cuda.empty_cache()
                logger.warning("Trial {} pruned: CUDA out of memory with {} ({})", trial.number, hp, exc)
                raise optuna.TrialPruned(f"CUDA out of memory: {exc}") from exc
            logger.opt(exception=exc).error("Trial {} failed: {}: {}", trial.number, type(exc).__name__, exc)
            raise

    def _train(self, trial: optuna.Trial, hp: dict[str, Any], key: int) -> float:
        from quantnb.classifier import HybridTCNLSTM, Trainer, seed_everything  # torch, as above

        p = self.p
        data = self.data(hp["seq_len"])
        seed_everything(p.seed + key)  # the key, not the number: a retry trains exactly as its original
        model = HybridTCNLSTM(len(data.features), **dataclasses.asdict(_trial_model(p, hp)))
        cfg = _trial_train(p, hp, key)

        def on_epoch(st: Any) -> None:
            trial.report(st.f1_macro, st.epoch)
            s, n, b = st.f1_per_class
            logger.debug("Trial {} epoch {}: val/f1_macro={:.4f} F1 [S/N/B]={:.3f}/{:.3f}/{:.3f} lr={:.2e}",
                        trial.number, st.epoch, st.f1_macro, s, n, b, st.lr)
            if trial.should_prune():
                reason = f"epoch {st.epoch}: val F1 macro {st.f1_macro:.4f} below the median of earlier trials"
                logger.debug("Trial {} pruned at {}", trial.number, reason)
                raise optuna.TrialPruned(reason)

        def on_batch(b: Any) -> None:  # an epoch of the trial in progress: the cell does not look hung
            epochs = p.epochs_per_trial
            self.ctx.report_step(b.batch, b.n_batches, "batches", context=f"trial {trial.number} · epoch {b.epoch}/"
                                 f"{epochs}", item_fraction=(b.epoch - 1 + b.batch / b.n_batches) / epochs)

        ckpt = self.ctx.run_dir / "trials" / f"trial_{trial.number}"
        result = Trainer(model, data.train, data.val, cfg, ckpt, on_epoch_end=on_epoch, on_batch_end=on_batch).fit()
        assert result.best_f1_macro is not None  # Trainer.fit always sets it
        return float(result.best_f1_macro)

    def _train_cv(self, trial: optuna.Trial, hp: dict[str, Any], key: int) -> float:
        """Mean test F1 macro over the purged splits; each split stops early on its inner split."""
        import numpy as np

        from quantnb.classifier import HybridTCNLSTM, Trainer, classification_scores, evaluate, seed_everything

        p, scores = self.p, []
        scored: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}  # (split, group) -> (targets, predictions)
        folds = self.folds(hp["seq_len"])
        for k, fold in enumerate(folds):
            seed_everything(p.seed + key)
            model = HybridTCNLSTM(fold.train.n_features, **dataclasses.asdict(_trial_model(p, hp)))
            cfg = _trial_train(p, hp, key)
            Trainer(model, fold.train, fold.inner_val, cfg,
                    self.ctx.run_dir / "trials" / f"trial_{trial.number}" / f"fold_{k}").fit()
            with _threads(p.num_threads):  # the trainer sets them for fit() only
                for g, ds in zip(fold.groups, fold.tests, strict=True):
                    scored[k, g] = (ds.targets, evaluate(model, ds).predictions)
            scores.append(_f1([scored[k, g] for g in fold.groups], classification_scores))
            logger.debug("Trial {} split {} (groups {}): test F1 macro {:.4f}", trial.number, k, fold.groups,
                         scores[-1])
            trial.report(float(np.mean(scores)), k)
            if trial.should_prune():
                raise optuna.TrialPruned(f"split {k}: mean F1 macro {np.mean(scores):.4f} below the median")
        groups = sorted({g for _, g in scored})
        trial.set_user_attr(FOLD_SCORES_ATTR, [  # the PBO's columns: each group, scored by the splits testing it
            float(np.mean([_f1([v], classification_scores) for (_, h), v in scored.items() if h == g]))
            for g in groups])
        if p.cv_mode == "cpcv":
            from quantnb.evaluation import cpcv_paths

            trial.set_user_attr(SPLIT_SCORES_ATTR, scores)
            trial.set_user_attr(PATH_SCORES_ATTR, [_f1([scored[int(s), g] for g, s in enumerate(path)],
                                                       classification_scores)
                                                   for path in cpcv_paths(p.cv_groups, p.cv_test_groups)])
        trial.set_user_attr("f1_macro_sd", float(np.std(scores, ddof=1)))
        return float(np.mean(scores))


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch threads (None: torch's), then restore them."""
    import torch

    saved = torch.get_num_threads()
    try:
        if n is not None:
            torch.set_num_threads(n)
        yield
    finally:
        torch.set_num_threads(saved)


def _f1(parts: list[tuple[Any, Any]], classification_scores: Any) -> float:
    """F1 macro of the concatenated (targets, predictions) parts."""
    import numpy as np

    return float(classification_scores(np.concatenate([t for t, _ in parts]),
                                       np.concatenate([q for _, q in parts])).f1_macro)


def run_optimization(params: OptimizationParams) -> OptimizationResult:
    """Run (or resume) the study until it has ``n_trials`` finished trials; write the best parameters.

    Parameters
    ----------
    params : OptimizationParams
        The stage's validated parameters.

    Returns
    -------
    OptimizationResult
        Best trial, its parameters and where they were written, trial counts.

    Raises
    ------
    ConfigError
        If the labelled data is missing.
    QuantnbError
        If no trial completed (all pruned or failed).

    Examples
    --------
    >>> result = run_optimization(OptimizationParams(n_trials=6))  # labelled_dir: the latest labelling run's
    >>> result.best_value, result.best_params_path
    """
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    with start_run(params) as ctx:
        logger.info("Labelled data: {}", params.labelled_source())
        labelled, label_cfg = load_labelled(ctx.root, params.labelled_folder())
        if label_cfg.get("method") == "meta":  # its trials would fit 3 classes without the primary's side
            raise ConfigError(f"labelled_dir={params.labelled_dir}: meta-labels (SKIP/TAKE on a primary side) are not "
                              "searched by the optimization stage yet; train the secondary model with the training "
                              "stage (its hyper-parameters as fields, or best_params_path of a fixed-horizon study)")
        if params.sample_weight_col and params.sample_weight_col not in labelled.columns:
            raise ConfigError(f"sample_weight_col={params.sample_weight_col!r}: the labels in {params.labelled_dir} "
                              f"have no such column (labelled before the AFML weights); label them again with the "
                              "labelling stage, or pass sample_weight_col=None")
        looked_at = record_labelled_span(ctx, labelled, label_cfg, params.labelled_folder(),
                                         *_selection_span(params, labelled, int(label_cfg["lookahead_min"])),
                                         what="selection")
        name = params.resolved_study_name()
        space = search_space(params)
        study = open_study(params.storage, name, params.seed, params.pruner_startup_trials, ctx.root, space=space)
        check_study_compatible(study, params)
        target = _target_trials(params.n_trials, space)
        recovered = recover_dead_trials(study)
        counts = _counts(study)
        remaining = max(target - counts["finished"] - counts["running"], 0)
        logger.info("Study {} in {}: {} finished trial(s), {} running in other workers, {} queued again after a "
                    "kill ({} now), {} more to start", name, params.storage.split("?")[0], counts["finished"],
                    counts["running"], counts["waiting"], len(recovered), remaining)
        ctx.set_total(target)
        for t in study.get_trials(deepcopy=False, states=_FINISHED):
            ctx.checkpoint.mark_completed(f"trial-{t.number}")

        def on_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            state = trial.state.name.lower()
            if trial.state in _FINISHED:
                ctx.checkpoint.mark_completed(f"trial-{trial.number}")
            else:
                ctx.checkpoint.mark_failed(f"trial-{trial.number}", state)
            ctx.item_done(f"trial-{trial.number}", events=len(trial.intermediate_values))
            logger.info("Trial {} {} (value {}); best so far: {}", trial.number, state, trial.value,
                        _best(study))

        failures_here = [0]

        def stop_when_enough(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            """Stop at ``target`` finished trials, counting the running ones of live workers.

            Not a fixed number of trials per worker: when another worker dies, this one runs its
            retried trial and the trials it would have run. A worker whose own trials failed
            ``target`` times gives up (a bug, not bad luck).
            """
            failures_here[0] += trial.state == TrialState.FAIL
            recover_dead_trials(study)  # a worker that died meanwhile: its trial is queued again, and counted
            c = _counts(study)
            if (c["finished"] >= target or (not c["waiting"] and c["finished"] + c["running"] >= target)
                    or failures_here[0] >= target):
                study.stop()

        if remaining or counts["waiting"]:
            study.optimize(_Objective(params, ctx, labelled, int(label_cfg["lookahead_min"])),
                           n_trials=None, timeout=params.timeout_s, catch=(Exception,),
                           callbacks=[on_trial, stop_when_enough], gc_after_trial=True)
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            raise QuantnbError(f"study {name}: no trial completed; widen the search space or raise n_trials")
        best = study.best_trial
        fixed = {"kernel_size": params.kernel_size, "n_blocks": params.n_blocks, "lstm_layers": params.lstm_layers}
        finished = study.get_trials(deepcopy=False, states=_FINISHED)
        columns = params.pbo_columns()
        pbo, n_pbo = pbo_of_study(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), columns)
        selection = {"n_trials": len(finished), "pbo": pbo, "pbo_trials": n_pbo, "cv_folds": params.cv_folds,
                     "cv_mode": params.cv_mode, "pbo_columns": columns if params.uses_cv() else None,
                     "fold_f1_macro": best.user_attrs.get(FOLD_SCORES_ATTR),
                     "f1_macro_sd": best.user_attrs.get("f1_macro_sd"),
                     "sample_weight_col": params.sample_weight_col, "test_span_evaluations": looked_at}
        if params.cv_mode == "cpcv":
            selection.update(cv_groups=params.cv_groups, cv_test_groups=params.cv_test_groups,
                             n_splits=cpcv_split_count(params.cv_groups, params.cv_test_groups),
                             n_paths=cpcv_path_count(params.cv_groups, params.cv_test_groups),
                             split_f1_macro=best.user_attrs.get(SPLIT_SCORES_ATTR),
                             path_f1_macro=best.user_attrs.get(PATH_SCORES_ATTR))
        logger.info("Selection: best of {} trial(s); {}", len(finished),
                    f"PBO {pbo:.2f} (CSCV over {n_pbo} trials x {columns} {_columns_word(selection)})"
                    if pbo is not None else
                    "no PBO (needs cv_folds >= 2 or cpcv with an even cv_groups, and 2 completed trials)")
        payload = {"study_name": name, "best_trial": best.number, "val_f1_macro": best.value, **selection,
                   "params": {**best.params, **fixed}, "labelled_dir": params.labelled_dir,
                   "label_suffix": params.run_suffix(), "lookahead_min": label_cfg["lookahead_min"],
                   "optimization_run_id": ctx.run_id}
        path = _best_params_path(params.storage, name, ctx.root)
        atomic_write_json(path, payload)
        atomic_write_json(ctx.run_dir / "best_params.json", payload)
        logger.success("Best trial {}: val F1 macro {:.4f} with {}; written to {}", best.number, best.value,
                       payload["params"], path)
        ctx.add_output("best_params", ctx.run_dir / "best_params.json")
        all_trials = study.get_trials(deepcopy=False)
        ctx.set_result(best_value=best.value, best_trial=best.number, **selection,
                       finished_trials=sum(t.state in _FINISHED for t in all_trials), trials=len(all_trials),
                       retried_trials=sum("failed_trial" in t.system_attrs for t in all_trials))
        ctx.record_metrics(best_f1_macro=best.value, best_trial=best.number, trials=len(all_trials),
                           n_trials=len(finished), pbo=pbo)
        trials = _trials_table(study)
    assert best.value is not None  # the best of the finished trials
    return OptimizationResult(ctx.run_id, name, float(best.value), payload["params"],
                              ctx.run_dir / "best_params.json", trials, selection)


def _selection_span(params: OptimizationParams, labelled: Any, lookahead_min: int) -> tuple[str, str]:
    """Return the first and last bar the objective scores: validation, or train + validation with CV."""
    from quantnb.classifier import chronological_split

    spans = chronological_split(labelled, train_frac=params.train_frac, val_frac=params.val_frac,
                                lookahead_min=lookahead_min).spans()
    return spans["train" if params.uses_cv() else "val"]["start"], spans["val"]["end"]


def _target_trials(n_trials: int, space: dict[str, optuna.distributions.BaseDistribution]) -> int:
    size = space_size(space)
    if size is not None and size < n_trials:
        logger.warning("The search space holds {} distinct settings only: the study stops at {} trials, not "
                       "n_trials={}", size, size, n_trials)
        return size
    return n_trials


def _counts(study: optuna.Study) -> dict[str, int]:
    states = [t.state for t in study.get_trials(deepcopy=False)]
    return {"finished": sum(s in _FINISHED for s in states), "running": states.count(TrialState.RUNNING),
            "waiting": states.count(TrialState.WAITING)}


def _best(study: optuna.Study) -> str:
    try:
        return f"trial {study.best_trial.number} ({study.best_value:.4f})"
    except ValueError:
        return "none yet"


def _best_params_path(storage: str, name: str, root: Path) -> Path:
    if storage.startswith("sqlite:///"):
        db = Path(storage.removeprefix("sqlite:///"))
        folder = (db if db.is_absolute() else root / db).parent
    elif "://" not in storage:
        folder = (root / storage).parent
    else:
        folder = optuna_dir(root)
    return folder / f"{name}_best_params.json"


def _trials_table(study: optuna.Study) -> Any:
    import polars as pl

    rows = [{"number": t.number, "state": t.state.name, "value": t.value,
             "epochs": len(t.intermediate_values), "key": t.user_attrs.get(KEY_ATTR),
             "retry_of": t.system_attrs.get("failed_trial"), **{k: str(v) for k, v in t.params.items()}}
            for t in study.get_trials(deepcopy=False)]
    return pl.DataFrame(rows) if rows else pl.DataFrame()
