from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from quantnb.errors import ConfigError

__all__ = ["ModelConfig", "TrainConfig", "RESULT_FIELDS"]

# Fields that change the computed result: a resumed run must use the same values.
RESULT_FIELDS = ("epochs", "batch_size", "lr", "weight_decay", "patience", "min_delta", "class_weights",
                 "max_grad_norm", "eta_min", "seed")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the hybrid TCN-LSTM: the one place its defaults are written.

    Read by :class:`~quantnb.classifier.HybridTCNLSTM`, the training stage (fields left None) and the
    optimization stage's fixed values; the model bundle stores the model's. A bad value raises ConfigError naming it.

    Parameters
    ----------
    tcn_channels, kernel_size, n_blocks : int
        Channels of every TCN block (>= 1), kernel width (>= 2), residual blocks (>= 1); the
        receptive field is ``1 + 2 (kernel_size - 1)(2**n_blocks - 1)`` steps.
    dropout : float
        Dropout in the TCN blocks and between LSTM layers, in [0, 1).
    lstm_hidden, lstm_layers : int
        LSTM hidden size and stacked layers, >= 1.
    """

    tcn_channels: int = 32
    kernel_size: int = 3
    n_blocks: int = 2
    dropout: float = 0.1
    lstm_hidden: int = 32
    lstm_layers: int = 1

    def __post_init__(self) -> None:
        for name, low in (("tcn_channels", 1), ("kernel_size", 2), ("n_blocks", 1), ("lstm_hidden", 1),
                          ("lstm_layers", 1)):
            _whole(name, getattr(self, name), low)
            object.__setattr__(self, name, int(getattr(self, name)))
        d = self.dropout
        if isinstance(d, bool) or not isinstance(d, numbers.Real) or not 0.0 <= float(d) < 1.0:
            raise ConfigError(f"dropout: got {d!r}; give a probability in [0, 1), e.g. 0.1")
        object.__setattr__(self, "dropout", float(d))


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters and execution settings of :class:`Trainer`; a bad value raises ConfigError naming it.

    Parameters
    ----------
    epochs : int
        Maximum epochs, >= 1 (also the cosine schedule's ``T_max``).
    batch_size : int
        Training windows per optimiser step, >= 1.
    lr : float
        AdamW learning rate at the start of the cosine schedule, > 0.
    weight_decay : float
        AdamW decoupled weight decay, >= 0.
    patience : int
        Epochs without a validation F1-macro improvement before stopping early, >= 1.
    min_delta : float
        Improvement in F1 macro that counts, >= 0.
    class_weights : tuple of 3 float, optional
        Cross-entropy weights (SELL, NEUTRAL, BUY), each >= 0; default inverse class frequency on train.
    max_grad_norm : float, optional
        Clip the global gradient L2 norm to this value, > 0; ``None`` disables clipping.
    eta_min : float
        Learning-rate floor of the cosine schedule, >= 0.
    seed : int
        Seed of the data order (``numpy.random.default_rng([seed, epoch])``) and of the RNGs.
    log_every_batches : int
        A progress line every this many batches, >= 1 (default 200).
    eval_batch_size : int
        Windows per forward pass in evaluation, >= 1.
    num_threads : int, optional
        ``torch.set_num_threads`` during training (restored afterwards); fix it for
        bit-reproducible CPU runs; ``None`` keeps torch's setting.
    deterministic : bool
        Use ``torch.use_deterministic_algorithms`` (warn-only) and deterministic cuDNN while training.
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    """

    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-2
    patience: int = 3
    min_delta: float = 0.0
    class_weights: tuple[float, ...] | None = None
    max_grad_norm: float | None = 1.0
    eta_min: float = 0.0
    seed: int = 42
    log_every_batches: int = 200
    eval_batch_size: int = 1024
    num_threads: int | None = None
    deterministic: bool = True
    device: str = field(default="auto")

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience", "log_every_batches", "eval_batch_size"):
            _whole(name, getattr(self, name), 1)
        _whole("seed", self.seed, 0)
        if self.num_threads is not None:
            _whole("num_threads", self.num_threads, 1)
        _real("lr", self.lr, strictly_positive=True)
        for name in ("weight_decay", "min_delta", "eta_min"):
            _real(name, getattr(self, name), strictly_positive=False)
        if self.max_grad_norm is not None:
            _real("max_grad_norm", self.max_grad_norm, strictly_positive=True)
        if self.class_weights is not None:
            w = tuple(self.class_weights)
            if len(w) != 3 or any(isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v)
                                  or v < 0 for v in w) or sum(w) <= 0:
                raise ConfigError(f"class_weights: got {self.class_weights!r}; give 3 non-negative weights "
                                  "(SELL, NEUTRAL, BUY), not all 0, or None for inverse class frequency")
            object.__setattr__(self, "class_weights", tuple(float(v) for v in w))
        if not isinstance(self.deterministic, bool):
            raise ConfigError(f"deterministic: got {self.deterministic!r}; give True or False")
        dev = str(self.device)
        if not (dev in ("auto", "cpu", "cuda", "mps") or dev.startswith("cuda:")):
            raise ConfigError(f"device: got {self.device!r}; give 'auto', 'cpu', 'cuda' or 'cuda:N'")

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON/YAML-ready dict."""
        d = dataclasses.asdict(self)
        d["class_weights"] = list(self.class_weights) if self.class_weights is not None else None
        return d


def _whole(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigError(f"{name}: got {value!r}; give a whole number >= {low}")


def _real(name: str, value: object, *, strictly_positive: bool) -> None:
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(float(value))
    if not ok or (float(value) <= 0 if strictly_positive else float(value) < 0):  # type: ignore[arg-type]
        bound = "> 0" if strictly_positive else ">= 0"
        raise ConfigError(f"{name}: got {value!r}; give a finite number {bound}")
