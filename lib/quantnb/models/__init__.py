"""Models and training: the HybridTCNLSTM classifier, a resumable trainer, F1 metrics and model bundles.

Typical use by the training stage::

    cfg = TrainConfig(epochs=10)                    # defaults: TrainConfig's; the architecture's: ModelConfig's
    seed_everything(cfg.seed)
    model = HybridTCNLSTM(len(data.features), **dataclasses.asdict(ModelConfig(lstm_hidden=64)))
    trainer = Trainer(model, data.train, data.val, cfg, run_dir / "checkpoints", on_epoch_end=report)
    result = trainer.fit(resume=resume)             # best weights are left in ``model``
    test = evaluate(model, data.test)
    plot_confusion_matrix(test.scores.confusion, plots_dir / "confusion_test.png")
    save_model_bundle(run_dir / "model", model, data.scaler, {"seq_len": data.seq_len, ...})
    bundle = load_model_bundle(run_dir / "model")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantnb._lazy import attach

if TYPE_CHECKING:  # the names for type checkers; at run time each loads on first use
    from quantnb.models._bundle import (
        BUNDLE_FORMAT,
        METADATA_FILE,
        SCALER_FILE,
        WEIGHTS_FILE,
        ModelBundle,
        library_versions,
        load_model_bundle,
        save_model_bundle,
    )
    from quantnb.models._config import ModelConfig, TrainConfig
    from quantnb.models._evaluate import Evaluation, evaluate, plot_confusion_matrix
    from quantnb.models._metrics import ClassificationScores, classification_scores, confusion_matrix, f1_from_confusion
    from quantnb.models._stats import BatchStats, EpochStats, TrainResult
    from quantnb.models._tcn_lstm import CausalConvBlock, HybridTCNLSTM
    from quantnb.models._trainer import Trainer, inverse_frequency_weights, seed_everything

__getattr__, __dir__ = attach(__name__, {
    "BUNDLE_FORMAT": "quantnb.models._bundle",
    "METADATA_FILE": "quantnb.models._bundle",
    "SCALER_FILE": "quantnb.models._bundle",
    "WEIGHTS_FILE": "quantnb.models._bundle",
    "ModelBundle": "quantnb.models._bundle",
    "library_versions": "quantnb.models._bundle",
    "load_model_bundle": "quantnb.models._bundle",
    "save_model_bundle": "quantnb.models._bundle",
    "ModelConfig": "quantnb.models._config",
    "TrainConfig": "quantnb.models._config",
    "Evaluation": "quantnb.models._evaluate",
    "evaluate": "quantnb.models._evaluate",
    "plot_confusion_matrix": "quantnb.models._evaluate",
    "ClassificationScores": "quantnb.models._metrics",
    "classification_scores": "quantnb.models._metrics",
    "confusion_matrix": "quantnb.models._metrics",
    "f1_from_confusion": "quantnb.models._metrics",
    "BatchStats": "quantnb.models._stats",
    "EpochStats": "quantnb.models._stats",
    "TrainResult": "quantnb.models._stats",
    "CausalConvBlock": "quantnb.models._tcn_lstm",
    "HybridTCNLSTM": "quantnb.models._tcn_lstm",
    "Trainer": "quantnb.models._trainer",
    "inverse_frequency_weights": "quantnb.models._trainer",
    "seed_everything": "quantnb.models._trainer",
})

__all__ = [
    "HybridTCNLSTM",
    "CausalConvBlock",
    "ModelConfig",
    "TrainConfig",
    "Trainer",
    "TrainResult",
    "EpochStats",
    "BatchStats",
    "seed_everything",
    "inverse_frequency_weights",
    "evaluate",
    "Evaluation",
    "plot_confusion_matrix",
    "confusion_matrix",
    "f1_from_confusion",
    "classification_scores",
    "ClassificationScores",
    "save_model_bundle",
    "load_model_bundle",
    "ModelBundle",
    "library_versions",
    "BUNDLE_FORMAT",
    "WEIGHTS_FILE",
    "SCALER_FILE",
    "METADATA_FILE",
]
