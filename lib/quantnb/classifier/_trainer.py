from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.utils.deterministic
from loguru import logger
from torch import nn
from torch.nn import functional as F

import quantnb.classifier._checkpoint as ckpt
from quantnb.classifier._config import RESULT_FIELDS, TrainConfig
from quantnb.classifier._dataset import WindowDataset
from quantnb.classifier._evaluate import class_names, evaluate
from quantnb.classifier._stats import BatchStats, EpochStats, TrainResult
from quantnb.errors import ConfigError


def inverse_frequency_weights(counts: np.ndarray) -> tuple[float, ...]:
    """Return cross-entropy class weights ``n / (n_classes * count_c)`` (0.0 for an absent class).

    Parameters
    ----------
    counts : numpy.ndarray, shape (n_classes,), integer
        Training windows per class.

    Returns
    -------
    tuple of float
        One weight per class; a balanced set gets all 1.0 (scikit-learn's ``class_weight="balanced"``).
    """
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    return tuple(float(total / (len(c) * v)) if v > 0 else 0.0 for v in c)


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy's global RNG and torch (CPU and CUDA) with ``seed``.

    Call it before building the model so that two runs with the same seed start from the
    same weights.

    Parameters
    ----------
    seed : int
        Non-negative seed.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def _torch_settings(config: TrainConfig) -> Iterator[None]:
    """Apply thread count and determinism for the run; restore torch's global settings afterwards."""
    det = cast(Any, torch.utils.deterministic)  # its attribute is set by a module-class trick stubs miss
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark, det.fill_uninitialized_memory)
    try:
        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        if config.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            # Filling every new tensor with NaN only guards against reading uninitialised memory, which
            # no op of ours does; it costs about 9 % of CPU training time, so it is switched off.
            det.fill_uninitialized_memory = False
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[3], saved[4]
        det.fill_uninitialized_memory = saved[5]


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    return torch.device(name)


class Trainer:
    """Train a window classifier (3 classes, or 2 for meta-labels) with early stopping and crash-safe checkpoints.

    Class-weighted ``CrossEntropyLoss`` (times each window's sample weight when ``train`` has
    weights, e.g. AFML uniqueness: López de Prado 2018, ch. 4), ``AdamW``, ``CosineAnnealingLR`` stepped per epoch
    (``T_max = epochs``), gradient-norm clipping, early stopping on validation F1 macro. After
    every epoch ``best.pt`` (weights, when F1 macro improved) and ``last.pt`` (model, optimiser,
    scheduler, epoch, early-stopping state, history, RNG states) are written atomically to
    ``checkpoint_dir``. The data order of epoch ``e`` is ``numpy.random.default_rng([seed, e])``'s
    permutation, so a run killed at any instant and resumed with ``fit(resume=True)`` redoes the
    interrupted epoch exactly and, on CPU with fixed ``num_threads``, ends with the same metrics
    as an uninterrupted run.

    Parameters
    ----------
    model : torch.nn.Module
        Maps x of shape (batch, seq_len, n_features) float32 to logits (batch, n_classes), e.g.
        :class:`HybridTCNLSTM`; ``model.n_classes`` (default 3) sets the class weights' length. Seed
        torch before building it (:func:`seed_everything`).
    train, val : WindowDataset
        Training and validation windows.
    config : TrainConfig
        Hyper-parameters.
    checkpoint_dir : str or os.PathLike
        Directory for ``best.pt`` and ``last.pt`` (created).
    on_epoch_end : callable, optional
        Called with :class:`EpochStats` after each epoch's checkpoint is on disk; an exception it
        raises (e.g. ``optuna.TrialPruned``) propagates out of :meth:`fit`. Epochs restored on
        resume are not reported again (a kill between the checkpoint and the callback skips
        that epoch's call).
    on_batch_end : callable, optional
        Called with :class:`BatchStats` after each optimiser step.

    Raises
    ------
    ConfigError
        If a dataset is empty or the model does not output ``n_classes`` logits.
    """

    def __init__(self, model: nn.Module, train: WindowDataset, val: WindowDataset, config: TrainConfig,
                 checkpoint_dir: str | os.PathLike[str], *,
                 on_epoch_end: Callable[[EpochStats], None] | None = None,
                 on_batch_end: Callable[[BatchStats], None] | None = None):
        if len(train) == 0 or len(val) == 0:
            raise ConfigError(f"train/val: {len(train)} and {len(val)} windows; both must be non-empty")
        self.model, self.train, self.val, self.config = model, train, val, config
        self.checkpoint_dir = Path(checkpoint_dir)
        self.on_epoch_end, self.on_batch_end = on_epoch_end, on_batch_end
        self.last_path = self.checkpoint_dir / ckpt.LAST_NAME
        self.best_path = self.checkpoint_dir / ckpt.BEST_NAME

    def _identity(self) -> dict[str, Any]:
        cfg = self.config.to_dict()
        return {**{k: cfg[k] for k in RESULT_FIELDS}, "model": getattr(self.model, "config", None),
                "n_train_windows": len(self.train), "n_val_windows": len(self.val),
                **({"sample_weighted": True} if self.train.weights is not None else {})}

    def fit(self, resume: bool = False) -> TrainResult:
        """Train until ``epochs`` or early stopping; leave the best weights in the model.

        Parameters
        ----------
        resume : bool
            Continue from ``checkpoint_dir/last.pt`` when it exists (a finished run returns at once).

        Returns
        -------
        TrainResult

        Raises
        ------
        ConfigError
            If resuming with settings, model or data that differ from the checkpoint's.
        DataError
            If the checkpoint is unreadable.
        """
        with _torch_settings(self.config):
            return self._fit(resume)

    def _fit(self, resume: bool) -> TrainResult:
        cfg, dev, t_start = self.config, _resolve_device(self.config.device), time.perf_counter()
        self.model.to(dev)
        n_classes = int(getattr(self.model, "n_classes", 3))  # 3 (SELL/NEUTRAL/BUY) or 2 (meta-labels)
        counts = self.train.class_counts(n_classes)
        weights = cfg.class_weights or inverse_frequency_weights(counts)
        if len(weights) != n_classes:
            raise ConfigError(f"class_weights: {len(weights)} weights for a model of {n_classes} classes; give "
                              f"one weight per class or None")
        self._weight = torch.tensor(weights, dtype=torch.float32, device=dev)
        sw = self.train.window_weights  # AFML sample weights (uniqueness, return attribution) when the labels have them
        self._sample_weight = None if sw is None else torch.tensor(sw, dtype=torch.float32, device=dev)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=cfg.epochs, eta_min=cfg.eta_min)
        self.es = {"best_f1_macro": -math.inf, "best_epoch": 0, "epochs_without_improvement": 0}
        history: list[EpochStats] = []
        done, stopped, finished = 0, None, False
        if resume and self.last_path.exists():
            state = ckpt.load_checkpoint(self.last_path)
            ckpt.check_compatible(self.last_path, state, self._identity())
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
            self.es = dict(state["early_stopping"])
            history = [EpochStats.from_dict(d) for d in state["history"]]
            done, stopped, finished = int(state["epoch"]), state["stopped_early_epoch"], bool(state["finished"])
            ckpt.restore_rng_states(state["rng"])
            logger.info("Resumed from {} after epoch {} (best F1 Macro {:.4f} at epoch {})", self.last_path, done,
                        self.es["best_f1_macro"], self.es["best_epoch"])
        elif resume:
            logger.info("resume=True but no checkpoint at {}; starting from epoch 1", self.last_path)
        n_params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        logger.info("Device: {} (torch threads: {}) | Parameters: {:,} trainable | train {:,} / val {:,} windows",
                    dev, torch.get_num_threads(), n_params, len(self.train), len(self.val))
        source = "given" if cfg.class_weights else f"inverse class frequency on train {counts}"
        logger.info("Class weights [{}]: {} ({})", "/".join(n[0] for n in class_names(n_classes)),
                    "/".join(f"{w:.4f}" for w in weights), source)
        epoch = done
        while not finished and epoch < cfg.epochs:
            epoch += 1
            stats = self._run_epoch(epoch, dev)
            history.append(stats)
            if self.es["epochs_without_improvement"] >= cfg.patience and epoch < cfg.epochs:
                stopped = epoch
            finished = stopped is not None or epoch == cfg.epochs
            self._save_last(epoch, history, stopped, finished)
            if self.on_epoch_end is not None:
                self.on_epoch_end(stats)
            if stopped is not None:
                logger.info("Early stopping at epoch {}: F1 Macro has not improved for {} epochs (best {:.4f} at "
                            "epoch {})", epoch, cfg.patience, self.es["best_f1_macro"], self.es["best_epoch"])
        if self.best_path.exists():
            best = torch.load(self.best_path, map_location=dev, weights_only=True)
            self.model.load_state_dict(best["model"])
        logger.info("Training finished: best F1 Macro {:.4f} at epoch {} ({} epochs run)",
                    self.es["best_f1_macro"], self.es["best_epoch"], epoch)
        return TrainResult(model=self.model, steps_done=epoch, step_unit="epochs", resumed_from_step=done,
                           last_checkpoint_path=self.last_path, best_model_path=self.best_path,
                           elapsed_s=time.perf_counter() - t_start, history=history,
                           best_f1_macro=float(self.es["best_f1_macro"]), best_epoch=int(self.es["best_epoch"]),
                           stopped_early_epoch=stopped, class_weights=tuple(weights))

    def _run_epoch(self, epoch: int, dev: torch.device) -> EpochStats:
        cfg, t0 = self.config, time.perf_counter()
        lr = float(self.opt.param_groups[0]["lr"])
        train_loss = self._train_epoch(epoch, dev)
        ev = evaluate(self.model, self.val, batch_size=cfg.eval_batch_size, device=dev, class_weights=self._weight)
        sc = ev.scores
        improved = sc.f1_macro > self.es["best_f1_macro"] + cfg.min_delta
        if improved:
            self.es.update(best_f1_macro=sc.f1_macro, best_epoch=epoch, epochs_without_improvement=0)
            ckpt.save_checkpoint(self.best_path, {"model": self.model.state_dict(), "epoch": epoch,
                                                  "f1_macro": sc.f1_macro})
        else:
            self.es["epochs_without_improvement"] += 1
        self.sched.step()
        stats = EpochStats(epoch, cfg.epochs, train_loss, ev.loss, sc.f1_macro, sc.f1_weighted, sc.f1_per_class, lr,
                           improved, float(self.es["best_f1_macro"]), int(self.es["best_epoch"]),
                           int(self.es["epochs_without_improvement"]), len(self.train), time.perf_counter() - t0)
        names = class_names(len(sc.f1_per_class))
        logger.info("Epoch {}/{} | Train Loss: {:.4f} | Val Loss: {:.4f} | F1 Macro: {:.4f} | F1 Weighted: {:.4f} | "
                    "F1 [{}]: {} | LR: {:.3e}", epoch, cfg.epochs, train_loss, ev.loss, sc.f1_macro, sc.f1_weighted,
                    "/".join(n[0] for n in names), "/".join(f"{v:.3f}" for v in sc.f1_per_class), lr)
        logger.debug(" ".join(f"{k}={v:.6g}" for k, v in stats.metrics().items()))
        if improved:
            logger.info("Best model saved (F1 Macro: {:.4f}) -> {}", sc.f1_macro, self.best_path)
        return stats

    def _train_epoch(self, epoch: int, dev: torch.device) -> float:
        cfg, n = self.config, len(self.train)
        order = np.random.default_rng([cfg.seed, epoch]).permutation(n)
        n_batches = math.ceil(n / cfg.batch_size)
        self.model.train()
        loss_sum, weight_sum = torch.zeros((), device=dev), torch.zeros((), device=dev)
        t0 = time.perf_counter()
        for b in range(n_batches):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            x, y = self.train.get_batch(idx)
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            self.opt.zero_grad(set_to_none=True)
            if self._sample_weight is None:
                loss = F.cross_entropy(self.model(x), y, weight=self._weight)
            else:  # sum_i s_i c_{y_i} CE_i / sum_i s_i c_{y_i}: the class-weighted mean with sample weights s
                sw = self._sample_weight[torch.from_numpy(idx).to(dev)] * self._weight[y]
                loss = (F.cross_entropy(self.model(x), y, reduction="none") * sw).sum() / sw.sum().clamp_min(1e-12)
            loss.backward()
            if cfg.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
            self.opt.step()
            w = self._weight[y].sum() if self._sample_weight is None else sw.sum()
            loss_sum += loss.detach() * w
            weight_sum += w
            if (b + 1) % cfg.log_every_batches == 0:
                seen = min((b + 1) * cfg.batch_size, n)
                logger.info("Epoch {}/{} | batch {}/{} ({:.1f}%) | loss {:.4f} | {:,.0f} samples/s", epoch,
                            cfg.epochs, b + 1, n_batches, 100.0 * (b + 1) / n_batches, float(loss_sum / weight_sum),
                            seen / max(time.perf_counter() - t0, 1e-9))
            if self.on_batch_end is not None:
                self.on_batch_end(BatchStats(epoch, b + 1, n_batches, float(loss.detach()), len(idx)))
        return float(loss_sum / weight_sum) if float(weight_sum) > 0 else float("nan")

    def _save_last(self, epoch: int, history: list[EpochStats], stopped: int | None, finished: bool) -> None:
        ckpt.save_checkpoint(self.last_path, {
            "epoch": epoch, "finished": finished, "stopped_early_epoch": stopped,
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "early_stopping": dict(self.es), "history": [h.to_dict() for h in history],
            "rng": ckpt.capture_rng_states(), "identity": self._identity(),
            "data_order": {"scheme": "numpy.random.default_rng([seed, epoch]).permutation", "seed": self.config.seed},
        })
