"""Training stage: the chosen TCN-LSTM trained with class weights, early stopping on F1 macro, resume.

Hyper-parameters come from the optimization's best-parameters JSON (``best_params_path``),
overridden by any explicitly given field. Checkpoints go to ``runs/<run_id>/checkpoints/``
(best and last, atomically, every epoch); ``resume=True`` continues from the last one. The
run ends with a test-set report (beside the persistence and majority-class baselines, each with
the paired block bootstrap CI of the F1 macro difference), a confusion-matrix plot in ``debug_plots/<run_id>/`` and a
model bundle in ``runs/<run_id>/model/`` that later stages load without the notebook.

On meta-labels (labelling ``method="meta"``, AFML 3.6) the model is a 2-class secondary (SKIP /
TAKE) and the report adds its precision and recall on TAKE against always taking the primary's
side, and the primary's bets sized by the model's probability (AFML ch. 10) against the same bets
unsized on the test split, each with a paired block bootstrap CI and a sentence (``test["meta"]``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Self

import numpy as np
from loguru import logger
from pydantic import Field, PositiveFloat, PositiveInt, PrivateAttr, model_validator

from quantnb.classifier import ModelConfig, TrainConfig, load_labelled
from quantnb.display import HtmlResult
from quantnb.errors import ConfigError
from quantnb.runs import checkpoints_dir, model_dir, start_run
from quantnb.stages._links import LabelledDataParams, SampleWeightCol, latest_output, record_labelled_span

__all__ = ["TrainingParams", "TrainingResult", "run_training"]

_SEQ_LEN = 60  # window length, minutes, when neither the best parameters nor the caller give one
# Hyper-parameters an optimization may choose: the defaults are ModelConfig's and TrainConfig's, read, not copied.
_MODEL_DEFAULTS: dict[str, Any] = {**dataclasses.asdict(ModelConfig()), "seq_len": _SEQ_LEN,
                                   "lr": TrainConfig.lr,
                                   "batch_size": TrainConfig.batch_size}


class TrainingParams(LabelledDataParams):
    """Parameters of the training stage; model fields left None come from the best-parameters JSON.

    Defaults are read from their one owner: the architecture's from :class:`~quantnb.classifier.ModelConfig`,
    the trainer's (epochs, patience, lr, batch size, weight decay, seed) from
    :class:`~quantnb.classifier.TrainConfig`. The fields stay flat (``-p epochs=5``), as in the notebook.

    ``best_params_path=None`` takes the best parameters of the latest completed optimization
    run on the same ``labelled_dir`` (when the parameters are validated); the run logs which,
    or that there is none and the built-in defaults are used.
    """

    stage = "training"
    best_params_path: str | None = Field(
        None, description="best_params.json of an optimization run; None: the latest completed optimization's "
                          "on the same labelled_dir, else built-in defaults.")
    tcn_channels: PositiveInt | None = Field(None, description="TCN channels.")
    kernel_size: PositiveInt | None = Field(None, description="TCN kernel size.")
    n_blocks: PositiveInt | None = Field(None, description="TCN residual blocks.")
    dropout: float | None = Field(None, ge=0, lt=1, description="Dropout.")
    lstm_hidden: PositiveInt | None = Field(None, description="LSTM hidden size.")
    lstm_layers: PositiveInt | None = Field(None, description="LSTM layers.")
    seq_len: PositiveInt | None = Field(None, description="Window length, minutes.")
    lr: PositiveFloat | None = Field(None, description="Initial AdamW learning rate.")
    batch_size: PositiveInt | None = Field(None, description="Windows per step.")
    epochs: PositiveInt = Field(TrainConfig.epochs,
                                description="Maximum epochs (cosine schedule length).")
    patience: PositiveInt = Field(TrainConfig.patience,
                                  description="Early-stopping patience on val F1 macro, epochs.")
    weight_decay: float = Field(TrainConfig.weight_decay, ge=0, description="AdamW weight decay.")
    class_weights: list[float] | None = Field(None, description="SELL/NEUTRAL/BUY weights (SKIP/TAKE on "
                                                                "meta-labels); None: inverse frequency.")
    sample_weight_col: SampleWeightCol = Field(
        None, description="Weigh each window's loss by its label's AFML uniqueness or return-attribution weight "
                          "(columns of the labelling stage); None: unweighted.")
    sequential_bootstrap: bool = Field(
        False, description="Weigh each training window by how often AFML's sequential bootstrap (ch. 4.5, seeded by "
                           "seed) draws its label, times sample_weight_col's weight; False: every label once.")
    train_frac: float = Field(0.7, gt=0, lt=1, description="Chronological train fraction.")
    val_frac: float = Field(0.15, gt=0, lt=1, description="Chronological validation fraction.")
    seed: int = Field(TrainConfig.seed, ge=0, description="Seed of weights init, data order and "
                                                                            "dropout.")
    log_every_batches: PositiveInt = Field(TrainConfig.log_every_batches,
                                           description="A progress line every this many batches.")
    num_threads: PositiveInt | None = Field(
        1, description="torch threads; 1 (the default) is fastest for these small models and makes resume "
                       "bit-reproducible; None keeps torch's.")
    _best_params_from: str | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _latest_best_params(self) -> Self:
        if self.best_params_path is None and self.labelled_dir is not None:
            found = latest_output(self.project_dir, "optimization", "best_params",
                                  parameter=("labelled_dir", self.labelled_dir))
            if found is not None:
                object.__setattr__(self, "best_params_path", found[1])  # frozen: set once, while validating
                self._best_params_from = found[0]
        return self

    def best_params_source(self) -> str:
        """Return where the model's hyper-parameters come from, for the run's log."""
        if self.best_params_path is None:
            return (f"no completed optimization run on {self.labelled_dir}: built-in defaults "
                    "(and the fields given); run the optimization stage or pass best_params_path")
        if self._best_params_from is None:
            return f"best_params_path {self.best_params_path} (given)"
        return (f"{self.best_params_path}, from {self._best_params_from}, the latest completed optimization "
                f"on {self.labelled_dir}")

    def model_params(self, root: Path) -> dict[str, Any]:
        """Merge defaults, the best-parameters JSON and explicit fields (explicit wins).

        Parameters
        ----------
        root : Path
            Project directory (``best_params_path`` is relative to it).

        Returns
        -------
        dict of str to Any
            Model and trainer settings.

        Raises
        ------
        ConfigError
            If ``best_params_path`` is given but missing or unreadable.
        """
        merged = dict(_MODEL_DEFAULTS)
        if self.best_params_path:
            path = root / self.best_params_path
            try:
                merged.update(json.loads(path.read_text())["params"])
            except (FileNotFoundError, json.JSONDecodeError, KeyError) as exc:
                raise ConfigError(f"best_params_path={self.best_params_path!r}: cannot read 'params' from {path} "
                                  f"({type(exc).__name__}); run the optimization stage or give the fields") from None
        merged.update({k: getattr(self, k) for k in _MODEL_DEFAULTS if getattr(self, k) is not None})
        return merged


@dataclasses.dataclass
class TrainingResult(HtmlResult):
    """Training outcome: history, test metrics and where the bundle and plots went."""

    run_id: str
    best_val_f1_macro: float
    test: dict[str, Any]
    bundle_dir: Path
    confusion_plot: Path
    history: list[dict[str, Any]]
    data_span: dict[str, Any] | None = None  # per split: start, end (ISO 8601 UTC), rows, windows

    def summary(self) -> Any:
        """Print test F1 scores; return the per-epoch history as a polars DataFrame."""
        import polars as pl

        t = self.test
        per_class = (f"S/N/B {t['f1_sell']:.3f}/{t['f1_neutral']:.3f}/{t['f1_buy']:.3f}" if "f1_sell" in t
                     else f"SKIP/TAKE {t['f1_skip']:.3f}/{t['f1_take']:.3f}")
        print(f"Training {self.run_id}: best val F1 macro {self.best_val_f1_macro:.4f}; test F1 macro "
              f"{t['f1_macro']:.4f}, weighted {t['f1_weighted']:.4f}, {per_class}")
        for b in t.get("baselines", {}).values():
            print(b["verdict"])
        for v in (t.get("meta") or {}).get("verdicts", []):
            print(v)
        print(f"Model bundle: {self.bundle_dir}")
        return pl.DataFrame([{k: v for k, v in h.items() if k != "f1_per_class"} for h in self.history])


def _baselines(data: Any, labelled: Any, lookahead_min: int, y_pred: np.ndarray, seed: int) -> dict[str, Any]:
    """Score the persistence and majority-class baselines on the test windows, each with the paired F1 macro CI."""
    import polars as pl

    from quantnb.classifier import META_LABEL_NAMES
    from quantnb.evaluation import compare_to_baseline, persistence_predictions

    y_true, n_classes = data.test.targets, len(data.class_names)
    majority = int(np.bincount(data.train.targets, minlength=n_classes).argmax())
    minutes = pl.col("ts").dt.epoch("s") // 60
    end_min = data.splits.test.select(minutes).to_series().to_numpy()[data.test.ends]
    lab = labelled.select(minutes.alias("m"), pl.col("label").cast(pl.Int64).fill_null(-1))
    persist, coverage = persistence_predictions(end_min, lab["m"].to_numpy(), lab["label"].to_numpy(),
                                                lookahead_min, majority)
    block = max(float(lookahead_min), len(y_true) ** (1 / 3))  # labels overlap over the lookahead
    out = {}
    for name, base in (("persistence", persist), ("majority", np.full_like(y_true, majority))):
        out[name] = compare_to_baseline(y_true, y_pred, base, baseline=name, mean_block_len=block, seed=seed,
                                        n_classes=n_classes).to_dict()
    out["persistence"]["coverage"] = coverage  # share of rows whose bar t - lookahead had a label
    out["majority"]["class"] = majority
    if data.class_names == META_LABEL_NAMES:  # meta-labels: the primary alone takes every bet (TAKE everywhere)
        out["take_all"] = compare_to_baseline(y_true, y_pred, np.ones_like(y_true), baseline="always-take (primary)",
                                              mean_block_len=block, seed=seed, n_classes=n_classes).to_dict()
    return out


def _meta_report(data: Any, ev: Any, label_cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    """Score the secondary model against always taking the primary's side, and its bet sizes against unsized bets."""
    from quantnb.classifier import compare_precision_to_take_all, compare_sizing

    y_true, lookahead = data.test.targets, int(label_cfg["lookahead_min"])
    block = max(float(lookahead), len(y_true) ** (1 / 3))  # labels overlap over the holding period
    precision = compare_precision_to_take_all(y_true, ev.predictions, mean_block_len=block, seed=seed)
    trade_return = data.splits.test.get_column("trade_return").to_numpy()[data.test.ends]
    sizing = compare_sizing(ev.probabilities[:, 1].astype(np.float64), trade_return,
                            cost_bps=float(label_cfg.get("meta_cost_bps", 0.0)), mean_block_len=block, seed=seed)
    return {"take_all": precision, "sizing": sizing.to_dict(), "verdicts": [precision["verdict"], sizing.verdict]}


def run_training(params: TrainingParams) -> TrainingResult:
    """Train, evaluate on the test split, plot the confusion matrix and export the model bundle.

    Parameters
    ----------
    params : TrainingParams
        The stage's validated parameters.

    Returns
    -------
    TrainingResult
        Test metrics, the bundle's path, the learning curves and the confusion matrix.

    Raises
    ------
    ConfigError
        Missing labelled data or best parameters, or a resume with different settings.

    Examples
    --------
    >>> result = run_training(TrainingParams(epochs=5))  # the latest labels, the study's best parameters
    >>> result.test["f1_macro"], result.bundle_dir
    """
    # heavy: imported by the run, not by the runner's parameter validation
    from quantnb.classifier import (
        LABEL_NAMES,
        META_LABEL_NAMES,
        HybridTCNLSTM,
        Trainer,
        evaluate,
        plot_confusion_matrix,
        prepare_datasets,
        save_model_bundle,
        seed_everything,
    )

    with start_run(params) as ctx:
        logger.info("Labelled data: {}", params.labelled_source())
        logger.info("Hyper-parameters: {}", params.best_params_source())
        hp = params.model_params(ctx.root)
        labelled, label_cfg = load_labelled(ctx.root, params.labelled_folder())
        meta = label_cfg.get("method") == "meta"  # a secondary model on the primary's bets (AFML 3.6)
        if meta:
            logger.info("Meta-labels: a 2-class secondary model (SKIP / TAKE) on the primary side's bets")
        data = prepare_datasets(labelled, seq_len=hp["seq_len"], train_frac=params.train_frac,
                                val_frac=params.val_frac, lookahead_min=int(label_cfg["lookahead_min"]),
                                weight_col=params.sample_weight_col,
                                class_names=META_LABEL_NAMES if meta else LABEL_NAMES,
                                extra_features=("side",) if meta else (),  # the secondary sees the primary's side
                                bootstrap_seed=params.seed if params.sequential_bootstrap else None)
        seed_everything(params.seed)
        arch = ModelConfig(**{f: hp[f] for f in ModelConfig.__dataclass_fields__})
        model = HybridTCNLSTM(len(data.features), **dataclasses.asdict(arch), n_classes=len(data.class_names))
        cfg = TrainConfig(epochs=params.epochs, batch_size=hp["batch_size"], lr=hp["lr"],
                          weight_decay=params.weight_decay, patience=params.patience,
                          class_weights=tuple(params.class_weights) if params.class_weights else None,
                          seed=params.seed, log_every_batches=params.log_every_batches,
                          num_threads=params.num_threads)
        logger.info("Model hyper-parameters: {}", hp)
        ctx.set_total(params.epochs)

        def on_epoch(st: Any) -> None:
            ctx.checkpoint.mark_completed(f"epoch-{st.epoch}")
            ctx.item_done(f"epoch-{st.epoch}", events=st.n_train_samples)

        def on_batch(b: Any) -> None:
            ctx.report_step(b.batch, b.n_batches, "batches", context=f"epoch {b.epoch}/{params.epochs}")

        trainer = Trainer(model, data.train, data.val, cfg, checkpoints_dir(ctx.run_dir), on_epoch_end=on_epoch,
                          on_batch_end=on_batch)
        result = trainer.fit(resume=ctx.resumed)
        if result.stopped_early_epoch:  # early stopping: the run's total is the epochs it ran (ETA, post-mortem)
            ctx.set_total(result.stopped_early_epoch)
        test_span = data.splits.spans()["test"]  # counted before it is scored: a run that fails later looked too
        record_labelled_span(ctx, labelled, label_cfg, params.labelled_folder(), test_span["start"], test_span["end"],
                             what="test split")
        ev = evaluate(model, data.test, batch_size=cfg.eval_batch_size)
        test: dict[str, Any] = ev.to_dict()
        test["baselines"] = _baselines(data, labelled, int(label_cfg["lookahead_min"]), ev.predictions, params.seed)
        ci = test["baselines"]["persistence"]  # the model's own interval, from the same resamples
        test["f1_macro_ci_low"], test["f1_macro_ci_high"] = ci["model_ci_low"], ci["model_ci_high"]
        for b in test["baselines"].values():
            logger.info("baseline/{}: {}", b["baseline"], b["verdict"])
        if meta:
            test["meta"] = _meta_report(data, ev, label_cfg, params.seed)
            for verdict in test["meta"]["verdicts"]:
                logger.info("meta: {}", verdict)
        logger.info("test/f1_macro={:.4f} test/f1_weighted={:.4f} test/f1 [{}]={}", test["f1_macro"],
                    test["f1_weighted"], "/".join(n[0] for n in data.class_names),
                    "/".join(f"{test[f'f1_{n.lower()}']:.3f}" for n in data.class_names))
        plot = ctx.paths.debug_plots / "confusion_matrix.png"
        plot_confusion_matrix(np.array(test["confusion"]), plot, title=f"{ctx.run_id}: test confusion matrix",
                              class_names=data.class_names)
        bundle = save_model_bundle(model_dir(ctx.run_dir), model, data.scaler, {
            "parameters": {**params.model_dump(mode="json", exclude=set(params.execution_fields)), **hp},
            "train_config": cfg.to_dict(), "seq_len": data.seq_len, "label_suffix": params.run_suffix(),
            "lookahead_min": label_cfg["lookahead_min"], "labelling": label_cfg, "data_span": data.summary(),
            "metrics": {"val_f1_macro_best": result.best_f1_macro, "best_epoch": result.best_epoch,
                        "stopped_early_epoch": result.stopped_early_epoch, "test": test},
            "class_weights": list(result.class_weights), "training_run_id": ctx.run_id})
        logger.success("Model bundle written to {}", bundle)
        ctx.add_output("model", bundle)
        ctx.add_output("confusion_plot", plot)
        ctx.set_result(val_f1_macro=result.best_f1_macro, test_f1_macro=test["f1_macro"],
                       test_f1_macro_ci=[round(ci["model_ci_low"], 4), round(ci["model_ci_high"], 4)],
                       best_epoch=result.best_epoch, stopped_early_epoch=result.stopped_early_epoch)
        ctx.record_metrics(test_f1_macro=test["f1_macro"], test_f1_macro_ci_low=ci["model_ci_low"],
                           test_f1_macro_ci_high=ci["model_ci_high"], val_f1_macro=result.best_f1_macro,
                           best_epoch=result.best_epoch, baselines=test["baselines"],
                           **({"meta": {k: v for k, v in test["meta"].items() if k != "verdicts"}} if meta else {}))
    assert result.best_f1_macro is not None  # Trainer.fit always sets it
    return TrainingResult(ctx.run_id, result.best_f1_macro, test, Path(bundle), plot,
                          [h.to_dict() for h in result.history], data.summary())
