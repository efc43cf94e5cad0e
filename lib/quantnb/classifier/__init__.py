"""The classifier: labels, splits and window datasets; the TCN-LSTM, its trainer, metrics and bundles; the study.

Typical use by the labelling and training stages::

    labelled = label_bars(bars, lookahead_min=60, threshold_short_frac=-0.004, threshold_long_frac=0.008)
    data = prepare_datasets(labelled, seq_len=60, train_frac=0.7, val_frac=0.15, lookahead_min=60)
    cfg = TrainConfig(epochs=10)      # defaults: TrainConfig's; the architecture's: ModelConfig's
    model = HybridTCNLSTM(len(data.features), **dataclasses.asdict(ModelConfig(lstm_hidden=64)))
    result = Trainer(model, data.train, data.val, cfg, run_dir / "checkpoints").fit(resume=resume)
    test = evaluate(model, data.test)
    save_model_bundle(run_dir / "model", model, data.scaler, {"seq_len": data.seq_len, ...})
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantnb._lazy import attach

if TYPE_CHECKING:  # the names for type checkers; at run time each loads on first use
    from quantnb.classifier._afml import (
        sequential_bootstrap,
    )
    from quantnb.classifier._bundle import (
        SCALER_FILE,
        ModelBundle,
        load_model_bundle,
        save_model_bundle,
        sha256_file,
    )
    from quantnb.classifier._config import ModelConfig, TrainConfig
    from quantnb.classifier._dataset import N_CLASSES, WindowDataset
    from quantnb.classifier._evaluate import Evaluation, evaluate, plot_confusion_matrix
    from quantnb.classifier._features import build_features, feature_columns
    from quantnb.classifier._labelled import load_labelled
    from quantnb.classifier._labels import (
        BUY,
        LABEL_NAMES,
        NEUTRAL,
        SELL,
        format_distribution,
        label_bars,
        label_counts,
        label_distribution,
        label_events,
        label_suffix,
        labelling_suffix,
    )
    from quantnb.classifier._meta import (
        META_LABEL_NAMES,
        SKIP,
        TAKE,
        bet_size,
        side_from_column,
    )
    from quantnb.classifier._metrics import (
        classification_scores,
        confusion_matrix,
    )
    from quantnb.classifier._prepare import PreparedData, prepare_datasets
    from quantnb.classifier._sizing import compare_precision_to_take_all, compare_sizing
    from quantnb.classifier._split import chronological_split
    from quantnb.classifier._stats import TrainResult
    from quantnb.classifier._study import (
        KEY_ATTR,
        OWNER_ATTR,
        check_storage_url,
        finished_outcome,
        open_study,
        recover_dead_trials,
        space_size,
        trial_key,
        worker_identity,
    )
    from quantnb.classifier._tcn_lstm import HybridTCNLSTM
    from quantnb.classifier._trainer import Trainer, inverse_frequency_weights, seed_everything
    from quantnb.features import FeatureScaler

__getattr__, __dir__ = attach(__name__)

__all__ = [
    "label_bars",
    "label_events",
    "sequential_bootstrap",
    "side_from_column",
    "bet_size",
    "compare_sizing",
    "compare_precision_to_take_all",
    "META_LABEL_NAMES",
    "SKIP",
    "TAKE",
    "label_suffix",
    "labelling_suffix",
    "label_counts",
    "label_distribution",
    "format_distribution",
    "SELL",
    "NEUTRAL",
    "BUY",
    "LABEL_NAMES",
    "N_CLASSES",
    "feature_columns",
    "build_features",
    "chronological_split",
    "FeatureScaler",
    "WindowDataset",
    "prepare_datasets",
    "PreparedData",
    "HybridTCNLSTM",
    "ModelConfig",
    "TrainConfig",
    "Trainer",
    "TrainResult",
    "seed_everything",
    "inverse_frequency_weights",
    "evaluate",
    "Evaluation",
    "plot_confusion_matrix",
    "confusion_matrix",
    "classification_scores",
    "save_model_bundle",
    "load_model_bundle",
    "ModelBundle",
    "SCALER_FILE",
    "KEY_ATTR",
    "OWNER_ATTR",
    "check_storage_url",
    "finished_outcome",
    "load_labelled",
    "open_study",
    "recover_dead_trials",
    "sha256_file",
    "space_size",
    "trial_key",
    "worker_identity",
]
