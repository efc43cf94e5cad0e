"""A 2-class secondary model (meta-labels SKIP / TAKE): trainer, evaluation and the free baselines over 2 classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from quantnb.classifier import HybridTCNLSTM, TrainConfig, Trainer, WindowDataset, evaluate, seed_everything
from quantnb.errors import ConfigError
from quantnb.evaluation import compare_to_baseline

TINY = {"tcn_channels": 6, "kernel_size": 2, "n_blocks": 1, "dropout": 0.0, "lstm_hidden": 6, "lstm_layers": 1}


def binary(n: int, seed: int) -> WindowDataset:
    """TAKE when feature 0 at the last step is positive."""
    x = np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)
    return WindowDataset(x, (x[:, 0] > 0).astype(np.int64), seq_len=4)


def test_trainer_fits_a_two_class_model_and_reports_skip_and_take(tmp_path: Path, log_messages: list[str]) -> None:
    seed_everything(0)
    model = HybridTCNLSTM(3, n_classes=2, **TINY)
    cfg = TrainConfig(epochs=3, batch_size=32, lr=2e-2, patience=5, num_threads=1, seed=1)
    result = Trainer(model, binary(300, 1), binary(150, 2), cfg, tmp_path).fit()
    assert len(result.class_weights) == 2 and result.best_f1_macro > 0.7
    assert set(result.history[-1].metrics()) >= {"val/f1_skip", "val/f1_take"}
    test = binary(200, 3)
    ev = evaluate(model, test)
    assert ev.scores.confusion.shape == (2, 2)
    assert ev.scores.f1_macro == pytest.approx(sum(ev.scores.f1_per_class) / 2)  # averaged over 2 classes, not 3
    d = ev.to_dict()
    assert {"f1_skip", "f1_take"} <= set(d) and "f1_buy" not in d
    assert ev.probabilities.shape == (len(test), 2) and np.allclose(ev.probabilities.sum(axis=1), 1.0, atol=1e-6)
    assert (ev.probabilities.argmax(axis=1) == ev.predictions).all()
    assert any("Class weights [S/T]:" in m for m in log_messages)
    with pytest.raises(ConfigError, match="class_weights: 3 weights for a model of 2 classes"):
        Trainer(model, binary(100, 1), binary(50, 2), TrainConfig(epochs=1, class_weights=(1.0, 1.0, 1.0)),
                tmp_path / "other").fit()


def test_the_baseline_comparison_scores_f1_macro_over_two_classes() -> None:
    y = np.array([0, 1, 1, 0, 1, 1, 0, 1])
    model = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    take_all = np.ones_like(y)
    res = compare_to_baseline(y, model, take_all, baseline="take all", n_classes=2, n_boot=50)
    # take all: F1(SKIP) = 0, F1(TAKE) = 2*5 / (2*5 + 3) = 10/13; macro over 2 classes
    assert res.f1_macro == pytest.approx((0 + 10 / 13) / 2)
    # model: SKIP tp 3 fp 1 fn 0 -> 6/7; TAKE tp 4 fp 0 fn 1 -> 8/9
    assert res.model_minus_baseline == pytest.approx((6 / 7 + 8 / 9) / 2 - 5 / 13)
