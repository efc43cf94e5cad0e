from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class EpochStats:
    """What one training epoch produced, passed to ``on_epoch_end`` and kept in the history.

    Attributes
    ----------
    epoch, n_epochs : int
        This epoch (1-based) and the maximum.
    train_loss, val_loss : float
        Class-weighted cross-entropy over the epoch's training windows and over validation.
    f1_macro, f1_weighted : float
        Validation F1, macro and support-weighted.
    f1_per_class : tuple of float
        Validation F1 of SELL, NEUTRAL, BUY (SKIP, TAKE for meta-labels).
    lr : float
        Learning rate used during this epoch.
    is_best : bool
        Whether this epoch improved the best F1 macro (and the best model was saved).
    best_f1_macro : float
        Best validation F1 macro so far; ``best_epoch`` is where it was reached.
    best_epoch : int
    epochs_without_improvement : int
        Early-stopping counter after this epoch.
    n_train_samples : int
        Training windows seen this epoch.
    duration_s : float
        Wall time of the epoch including validation and checkpointing, seconds.
    """

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
        """Rebuild from :meth:`to_dict` output.

        Parameters
        ----------
        d : dict of str to Any
            Field names to values, as :meth:`to_dict` wrote them.

        Returns
        -------
        EpochStats
        """
        return cls(**{**d, "f1_per_class": tuple(d["f1_per_class"])})


@dataclass(frozen=True)
class BatchStats:
    """One optimiser step, passed to ``on_batch_end``.

    Attributes
    ----------
    epoch : int
        Epoch, 1-based.
    batch, n_batches : int
        Batch within the epoch (1-based) and batches per epoch.
    loss : float
        Class-weighted cross-entropy of this batch.
    batch_size : int
        Windows in this batch.
    """

    epoch: int
    batch: int
    n_batches: int
    loss: float
    batch_size: int


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :meth:`Trainer.fit`.

    Attributes
    ----------
    history : list of EpochStats
        Every completed epoch, including those restored from a checkpoint.
    best_f1_macro : float
        Best validation F1 macro; ``best_epoch`` is where it was reached.
    best_epoch : int
    stopped_early_epoch : int or None
        Epoch where early stopping fired; ``None`` if training ran all epochs.
    class_weights : tuple of float
        Cross-entropy weights used (SELL, NEUTRAL, BUY).
    best_model_path, last_checkpoint_path : pathlib.Path
        ``best.pt`` (model weights) and ``last.pt`` (full training state).
    resumed_from_epoch : int
        Epochs restored from the checkpoint (0 for a fresh run).
    """

    history: list[EpochStats]
    best_f1_macro: float
    best_epoch: int
    stopped_early_epoch: int | None
    class_weights: tuple[float, ...]
    best_model_path: Path
    last_checkpoint_path: Path
    resumed_from_epoch: int

    @property
    def final(self) -> EpochStats:
        """Return the stats of the last completed epoch."""
        return self.history[-1]
