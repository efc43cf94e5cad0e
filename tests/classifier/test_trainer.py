from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import torch.utils.deterministic

from quantnb.classifier import (
    HybridTCNLSTM,
    PreparedData,
    TrainConfig,
    Trainer,
    WindowDataset,
    evaluate,
    inverse_frequency_weights,
    plot_confusion_matrix,
    seed_everything,
)
from quantnb.classifier._stats import BatchStats, EpochStats
from quantnb.errors import ConfigError

TINY = {"tcn_channels": 6, "kernel_size": 2, "n_blocks": 2, "dropout": 0.1, "lstm_hidden": 6, "lstm_layers": 1}


def tiny_model(n_features: int, seed: int = 0) -> HybridTCNLSTM:
    seed_everything(seed)
    return HybridTCNLSTM(n_features, **TINY)


def learnable(n: int, seed: int) -> WindowDataset:
    """Label = sign of feature 0 at the last step (SELL < -0.4 < NEUTRAL < 0.4 < BUY)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = np.where(x[:, 0] < -0.4, 0, np.where(x[:, 0] > 0.4, 2, 1))
    return WindowDataset(x, y, seq_len=4)


def test_trainer_learns_logs_and_reports_each_epoch(tmp_path: Path, log_messages: list[str]) -> None:
    train, val = learnable(600, 1), learnable(300, 2)
    epochs: list[EpochStats] = []
    batches: list[BatchStats] = []
    cfg = TrainConfig(epochs=5, batch_size=32, lr=2e-2, patience=10, num_threads=1, log_every_batches=10, seed=3)
    def torch_globals() -> tuple:
        return (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
                torch.utils.deterministic.fill_uninitialized_memory, torch.backends.cudnn.deterministic)

    before = torch_globals()
    result = Trainer(tiny_model(3), train, val, cfg, tmp_path, on_epoch_end=epochs.append,
                     on_batch_end=batches.append).fit()
    assert torch_globals() == before  # the trainer restores torch's global settings
    assert [e.epoch for e in epochs] == [1, 2, 3, 4, 5] and epochs == result.history
    assert len(batches) == 5 * 19 and batches[-1].batch == batches[-1].n_batches == 19
    assert result.best_f1_macro > 0.85 and result.stopped_early_epoch is None
    assert epochs[0].lr == pytest.approx(2e-2) and epochs[-1].lr < epochs[0].lr  # cosine annealing
    assert set(epochs[0].metrics()) >= {"train/loss", "val/loss", "val/f1_macro", "val/f1_buy", "train/lr"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]  # no temporary file left
    text = "\n".join(log_messages)
    assert "Device: cpu (torch threads: 1) | Parameters:" in text
    assert "Class weights [S/N/B]:" in text and "inverse class frequency on train" in text
    assert "Epoch 1/5 | batch 10/19 (52.6%) | loss " in text
    assert "Epoch 5/5 | Train Loss: " in text and " | Val Loss: " in text and " | F1 Weighted: " in text
    assert " | F1 [S/N/B]: " in text and " | LR: " in text
    assert f"Best model saved (F1 Macro: {result.best_f1_macro:.4f})" in text
    # the best weights are left in the model
    model = tiny_model(3, seed=99)
    model.load_state_dict(torch.load(result.best_model_path, weights_only=True)["model"])
    assert evaluate(model, val).scores.f1_macro == pytest.approx(result.best_f1_macro)


def test_early_stopping_fires_after_patience(tmp_path: Path, log_messages: list[str]) -> None:
    train, val = learnable(200, 1), learnable(100, 2)
    cfg = TrainConfig(epochs=10, batch_size=64, patience=2, min_delta=1.0, num_threads=1)  # nothing improves enough
    result = Trainer(tiny_model(3), train, val, cfg, tmp_path).fit()
    assert result.stopped_early_epoch == 3 and len(result.history) == 3 and result.best_epoch == 1
    assert [h.epochs_without_improvement for h in result.history] == [0, 1, 2]
    assert any("Early stopping at epoch 3" in m for m in log_messages)
    again = Trainer(tiny_model(3), train, val, cfg, tmp_path).fit(resume=True)  # finished: returns at once
    assert again.history == result.history and again.resumed_from_step == 3
    assert (again.steps_done, again.step_unit) == (3, "epochs")


def test_callback_exception_propagates_after_the_checkpoint(tmp_path: Path) -> None:
    def prune(stats: EpochStats) -> None:
        if stats.epoch == 2:
            raise optuna.TrialPruned(f"epoch {stats.epoch}")

    cfg = TrainConfig(epochs=5, batch_size=64, num_threads=1)
    with pytest.raises(optuna.TrialPruned):
        Trainer(tiny_model(3), learnable(200, 1), learnable(100, 2), cfg, tmp_path, on_epoch_end=prune).fit()
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 2


def test_resume_refuses_changed_settings_or_data(tmp_path: Path) -> None:
    train, val = learnable(200, 1), learnable(100, 2)
    Trainer(tiny_model(3), train, val, TrainConfig(epochs=1, batch_size=64, num_threads=1), tmp_path).fit()
    with pytest.raises(ConfigError, match="lr"):
        Trainer(tiny_model(3), train, val, TrainConfig(epochs=1, batch_size=64, lr=0.5), tmp_path).fit(resume=True)
    with pytest.raises(ConfigError, match="n_train_windows"):
        Trainer(tiny_model(3), learnable(300, 1), val, TrainConfig(epochs=1, batch_size=64), tmp_path).fit(
            resume=True)


def test_class_weights_given_or_inverse_frequency(tmp_path: Path) -> None:
    assert inverse_frequency_weights(np.array([1, 2, 1])) == pytest.approx((4 / 3, 2 / 3, 4 / 3))
    assert inverse_frequency_weights(np.array([0, 3, 1])) == pytest.approx((0.0, 4 / 9, 4 / 3))
    cfg = TrainConfig(epochs=1, batch_size=64, class_weights=(2.0, 0.5, 2.0), num_threads=1)
    result = Trainer(tiny_model(3), learnable(200, 1), learnable(100, 2), cfg, tmp_path).fit()
    assert result.class_weights == (2.0, 0.5, 2.0)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"epochs": 0}, "epochs"), ({"lr": 0.0}, "lr"), ({"class_weights": (1.0, 2.0)}, "class_weights"),
    ({"class_weights": (1.0, -1.0, 1.0)}, "class_weights"), ({"device": "gpu"}, "device"),
    ({"max_grad_norm": -1.0}, "max_grad_norm"), ({"log_every_batches": 0}, "log_every_batches"),
])
def test_bad_train_config_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**kwargs)


def test_real_bars_smoke_with_test_report(real_data: PreparedData, tmp_path: Path) -> None:
    cfg = TrainConfig(epochs=2, batch_size=64, num_threads=1)
    model = tiny_model(len(real_data.features))
    result = Trainer(model, real_data.train, real_data.val, cfg, tmp_path / "ckpt").fit()
    assert all(np.isfinite(h.train_loss) and np.isfinite(h.val_loss) for h in result.history)
    test = evaluate(model, real_data.test, class_weights=result.class_weights)
    assert test.scores.confusion.sum() == len(real_data.test) == test.n_samples
    assert 0.0 <= test.scores.f1_macro <= 1.0
    png = plot_confusion_matrix(test.scores.confusion, tmp_path / "plots" / "confusion_test.png", title="test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert test.to_dict()["confusion"] == test.scores.confusion.tolist()
