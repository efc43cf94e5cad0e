from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class EpochStats:
    """What one training epoch produced, passed to ``on_epoch_end`` and kept in the history."""

    epoch: int
    n_epochs: int
    train_loss: float
    val_loss: float
    f1_macro: float
    f1_weighted: float
    f1_per_class: tuple[float, ...]
    lr: float
    is_best: bool
    best_f1_macro: float
    best_epoch: int
    epochs_without_improvement: int
    n_train_samples: int
    duration_s: float

    def metrics(self) -> dict[str, float]:
        """Return the metrics under namespaced keys (``train/loss``, ``val/f1_macro``, ``train/lr`` ...)."""
        names = ("sell", "neutral", "buy") if len(self.f1_per_class) == 3 else ("skip", "take")
        return {"train/loss": self.train_loss, "val/loss": self.val_loss, "val/f1_macro": self.f1_macro,
                "val/f1_weighted": self.f1_weighted,
                **{f"val/f1_{n}": v for n, v in zip(names, self.f1_per_class, strict=False)},
                "train/lr": self.lr, "train/samples_per_s": self.n_train_samples / max(self.duration_s, 1e-9)}

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict."""
        d = dataclasses.asdict(self)
        d["f1_per_class"] = list(self.f1_per_class)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpochStats:
        """Rebuild from :meth:`to_dict` output."""
        return cls(**{**d, "f1_per_class": tuple(d["f1_per_class"])})


@dataclass(frozen=True)
class BatchStats:
    """One optimiser step, passed to ``on_batch_end``."""

    epoch: int
    batch: int
    n_batches: int
    loss: float
    batch_size: int


@dataclass(frozen=True)
class TrainResult:
    """Outcome of a training call that checkpoints as it goes, for the classifier and the agent alike.

    :meth:`quantnb.classifier.Trainer.fit` counts in epochs, :func:`quantnb.agent.train_sac` in
    environment steps (``step_unit``); the classifier-only fields are empty for the agent.

    Attributes
    ----------
    model : torch.nn.Module or stable_baselines3.SAC
        The trained model: the classifier with its best weights loaded, the SAC agent at its last step.
    steps_done : int
        Training done in all, restored part included, in ``step_unit``.
    step_unit : {"epochs", "env_steps"}
        What a step is.
    resumed_from_step : int
        Steps restored from a checkpoint, in ``step_unit``; 0 for a fresh start.
    last_checkpoint_path : pathlib.Path
        The full training state a resume starts from: ``last.pt``, or the agent's ``checkpoint.json``.
    best_model_path : pathlib.Path
        The weights to deploy: ``best.pt`` (best validation F1 macro), or the agent's model zip.
    elapsed_s : float
        Wall time of this call, seconds.
    history : list of EpochStats
        Classifier: every completed epoch, restored ones included; agent: empty.
    best_f1_macro : float or None
        Classifier: best validation F1 macro, reached at ``best_epoch``; agent: None.
    best_epoch : int or None
    stopped_early_epoch : int or None
        Classifier: epoch where early stopping fired; None if training ran all epochs (and for the agent).
    class_weights : tuple of float
        Classifier: cross-entropy weights used (SELL, NEUTRAL, BUY); agent: empty.
    """

    model: Any
    steps_done: int
    step_unit: Literal["epochs", "env_steps"]
    resumed_from_step: int
    last_checkpoint_path: Path
    best_model_path: Path
    elapsed_s: float
    history: list[EpochStats] = dataclasses.field(default_factory=list)
    best_f1_macro: float | None = None
    best_epoch: int | None = None
    stopped_early_epoch: int | None = None
    class_weights: tuple[float, ...] = ()

    @property
    def final(self) -> EpochStats:
        """Return the stats of the last completed epoch (classifier)."""
        return self.history[-1]
