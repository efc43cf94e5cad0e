"""Walk-forward stacking: the classifier retrained per agent fold on purged past labels (out-of-fold probabilities).

The agent's walk-forward cuts the decision bars into blocks ``0 .. K``
(:func:`quantnb.stages._agent_eval.agent_spans`). For every block ``j >= 1`` a classifier
``model_j`` is trained, with the configuration of the training run named by
``classifier_train_id``, on the labels whose end ``t1`` precedes the block's start less the
embargo (purged, López de Prado, AFML ch. 7), and gives the probabilities of block ``j`` only.
Block 0 has no earlier labels to learn from, so it has no out-of-fold probability and no agent
trains on it: the classifier agent's folds start at fold 1 (test block 2, training block 1).
Each model is a bundle in ``runs/<agent run>/classifiers/<model id>/model``, written when its
training ends; a resumed run loads the bundles already there instead of retraining.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import polars as pl
from loguru import logger

from quantnb.classifier import load_labelled
from quantnb.errors import ConfigError
from quantnb.runs import checkpoints_dir, model_dir
from quantnb.stages._agent_eval import Span

PROVENANCE_COLUMN = "clf_model"  # the model id behind each bar's probabilities (null: none)
PROVENANCE_FILE = "provenance.parquet"  # runs/<agent run>/classifiers/: ts and PROVENANCE_COLUMN per bar


@dataclasses.dataclass(frozen=True)
class FoldClassifier:
    """One classifier of the walk-forward stacking (``block_<j>`` or ``live``)."""

    model_id: str
    cutoff: dt.datetime
    directory: Path
    span: dict[str, Any]

    def record(self) -> dict[str, Any]:
        """Return the JSON-ready record of run.json metrics and the bundle."""
        return {"model_id": self.model_id, "label_t1_before": self.cutoff.isoformat(), **self.span}


@dataclasses.dataclass(frozen=True)
class Stacking:
    """The out-of-fold probabilities of the walk-forward (null before block 1) and the models behind them."""

    probabilities: pl.DataFrame
    models: list[FoldClassifier]
    live: FoldClassifier


def stacked_spans(spans: list[Span], *, mode: str) -> list[Span]:
    """Return folds 1 .. K-1 (block 0 has no out-of-fold probability); anchored ones train from block 1."""
    block1 = spans[0][2]
    return [(block1 if mode == "anchored" else t0, t1, s0, s1) for (t0, t1, s0, s1) in spans[1:]]


def _utc(x: Any) -> dt.datetime:
    return x if x.tzinfo else x.replace(tzinfo=dt.UTC)


def _label_ends(labelled: pl.DataFrame, lookahead_min: int) -> pl.DataFrame:
    if "t1" in labelled.columns:
        return labelled
    return labelled.with_columns(t1=pl.col("ts") + pl.duration(minutes=int(lookahead_min)))


def _inner_split(frame: pl.DataFrame, share: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split labelled rows chronologically; purge training labels whose ``t1`` reaches the validation start."""
    n_train = math.floor(frame.height * share)
    train, val = frame.slice(0, n_train), frame.slice(n_train)
    if val.height == 0 or train.height == 0:
        raise ConfigError(f"{frame.height} labelled rows: too few to split into train and validation")
    val_start = val["ts"][0]
    train = train.with_columns(label=pl.when(pl.col("t1") < val_start).then(pl.col("label")))
    return train, val


def _span(name: str, frame: pl.DataFrame, ds: Any) -> dict[str, Any]:
    ts = frame["ts"]
    first, last = cast(dt.datetime, ts.min()), cast(dt.datetime, ts.max())
    return {name: {"start": first.isoformat(), "end": last.isoformat(), "rows": frame.height,
                   "windows": len(ds)}}


def fit_fold_classifier(source: Any, labelled: pl.DataFrame, *, cutoff: dt.datetime, directory: Path,
                        epochs: int | None, resume: bool, model_id: str) -> FoldClassifier:
    """Train the source bundle's classifier again on the labels with ``t1 < cutoff``; save its bundle."""
    # the training run's configuration is reused (features, model, train_config, weights, train/val
    # proportion); ConfigError when too few labels precede the cutoff
    from quantnb.classifier import (
        TrainConfig,
        Trainer,
        WindowDataset,
        build_features,
        load_model_bundle,
        save_model_bundle,
        seed_everything,
    )
    from quantnb.features import FeatureScaler

    meta = source.metadata
    out = model_dir(directory)
    if resume and (out / "config_metadata.yaml").exists():
        done = load_model_bundle(out).metadata
        logger.info("classifier {}: trained before the restart, loaded from {}", model_id, out)
        return FoldClassifier(model_id, cutoff, out, done["data_span"])
    hp = meta.get("parameters") or {}
    lookahead = int(meta.get("lookahead_min") or 0)
    frame = _label_ends(labelled, lookahead).filter(pl.col("ts") < cutoff)
    frame = frame.with_columns(label=pl.when(pl.col("t1") < cutoff).then(pl.col("label")))  # purge
    last = frame.filter(pl.col("label").is_not_null())["ts"].max()
    if last is None:
        raise ConfigError(f"classifier {model_id}: no label ends before {cutoff.isoformat()}; use fewer walk-forward "
                          "folds or more data")
    frame = frame.filter(pl.col("ts") <= last)  # the purged tail: no label, no use
    tf, vf = float(hp.get("train_frac", 0.7)), float(hp.get("val_frac", 0.15))
    train, val = _inner_split(build_features(frame, source.features), tf / (tf + vf))
    scaler = FeatureScaler.fit(train, source.features)
    weight_col = hp.get("sample_weight_col")
    seq_len = int(meta["seq_len"])
    sets = [WindowDataset.from_frame(p, scaler, seq_len, weight_col=weight_col) for p in (train, val)]
    if min(len(s) for s in sets) == 0:
        raise ConfigError(f"classifier {model_id}: labels ending before {cutoff.isoformat()} give {len(sets[0])} "
                          f"training and {len(sets[1])} validation windows of seq_len={seq_len}; use fewer "
                          "walk-forward folds or more data")
    cfg_d = dict(meta.get("train_config") or {})
    if epochs is not None:
        cfg_d["epochs"] = min(int(cfg_d.get("epochs", epochs)), epochs)
    if cfg_d.get("class_weights") is not None:
        cfg_d["class_weights"] = tuple(cfg_d["class_weights"])
    cfg = TrainConfig(**cfg_d)
    seed_everything(cfg.seed)
    model = type(source.model)(**meta["model"]["params"])
    logger.info("classifier {}: labels ending before {} ({} train / {} validation windows, {} epochs at most)",
                model_id, cutoff.isoformat(), len(sets[0]), len(sets[1]), cfg.epochs)
    fit = Trainer(model, sets[0], sets[1], cfg, checkpoints_dir(directory)).fit(resume=resume)
    kept = frame.filter(pl.col("label").is_not_null())
    span = {**_span("train", train, sets[0]), **_span("val", val, sets[1]),
            "label_t1_max": cast(dt.datetime, kept["t1"].max()).isoformat()}
    save_model_bundle(out, model, scaler, {
        "parameters": hp, "train_config": cfg.to_dict(), "seq_len": seq_len, "lookahead_min": lookahead,
        "labelling": meta.get("labelling"), "label_suffix": meta.get("label_suffix"), "data_span": span,
        "metrics": {"val_f1_macro_best": fit.best_f1_macro, "best_epoch": fit.best_epoch},
        "training_run_id": meta.get("training_run_id"), "stacking": {"model_id": model_id,
                                                                      "label_t1_before": cutoff.isoformat()}})
    return FoldClassifier(model_id, cutoff, out, span)


def build_stacking(root: Path, run_dir: Path, source_dir: Path, bars: pl.DataFrame, spans: list[Span], *,
                   embargo_min: int, epochs: int | None, resume: bool, live_start: dt.datetime | None,
                   on_model: Callable[[FoldClassifier], None] | None = None) -> Stacking:
    """Train the per-block classifiers and assemble the out-of-fold probabilities of ``bars``."""
    from quantnb.agent import CLASSIFIER_FEATURES, ClassifierSignal

    source = ClassifierSignal.load(source_dir).bundle
    labelled_dir = (source.metadata.get("parameters") or {}).get("labelled_dir")
    if not labelled_dir:
        raise ConfigError(f"{source_dir}: config_metadata.yaml records no parameters.labelled_dir, so the classifier "
                          "cannot be retrained per walk-forward fold; retrain it with the training stage")
    labelled, _ = load_labelled(root, labelled_dir)
    embargo = dt.timedelta(minutes=embargo_min)
    starts = [_utc(s[2]) for s in spans]  # blocks 1 .. K: each fold's test start
    models = []
    for j, start in enumerate(starts, start=1):
        m = fit_fold_classifier(source, labelled, cutoff=start - embargo, directory=run_dir / "classifiers" /
                                f"block_{j}", epochs=epochs, resume=resume, model_id=f"block_{j}")
        models.append(m)
        if on_model is not None:
            on_model(m)
    live = models[-1]
    if live_start is not None:
        live = fit_fold_classifier(source, labelled, cutoff=_utc(live_start) - embargo,
                                   directory=run_dir / "classifiers" / "live", epochs=epochs, resume=resume,
                                   model_id="live")
        if on_model is not None:
            on_model(live)
    ts = bars["ts"]
    probs = np.full((bars.height, len(CLASSIFIER_FEATURES)), np.nan)
    owner = np.full(bars.height, None, dtype=object)
    ends = [*starts[1:], _utc(live_start) if live_start is not None else None]
    for m, start, end in zip(models, starts, ends, strict=True):
        lo = int(ts.search_sorted(start, side="left"))
        hi = bars.height if end is None else int(ts.search_sorted(end, side="left"))
        block = ClassifierSignal.load(m.directory).batch(bars, rows=(lo, hi)).drop("ts").to_numpy()[lo:hi]
        probs[lo:hi] = block
        owner[lo:hi][np.isfinite(block).all(axis=1)] = m.model_id  # the rest stays None
    frame = pl.DataFrame({"ts": ts}).with_columns(
        [pl.Series(c, probs[:, j]).fill_nan(None) for j, c in enumerate(CLASSIFIER_FEATURES)]
        + [pl.Series(PROVENANCE_COLUMN, owner.tolist(), pl.Utf8)])
    return Stacking(frame, models, live)
