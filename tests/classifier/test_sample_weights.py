"""Sample weights reach the trainer's loss: windows carry their label's weight, weights change what is learnt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from quantnb.classifier import (
    HybridTCNLSTM,
    TrainConfig,
    Trainer,
    WindowDataset,
    evaluate,
    label_events,
    prepare_datasets,
    seed_everything,
)
from quantnb.errors import ConfigError

TINY = {"tcn_channels": 6, "kernel_size": 2, "n_blocks": 2, "dropout": 0.0, "lstm_hidden": 6, "lstm_layers": 1}


def tiny_model(seed: int = 0) -> HybridTCNLSTM:
    seed_everything(seed)
    return HybridTCNLSTM(3, **TINY)


def learnable(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return x, np.where(x[:, 0] < -0.4, 0, np.where(x[:, 0] > 0.4, 2, 1))


def test_windows_carry_the_weight_of_their_last_row() -> None:
    x, y = learnable(10, 0)
    w = np.arange(10, dtype=np.float64) / 10
    ds = WindowDataset(x, y, seq_len=4, weights=w)
    assert ds.ends.tolist() == list(range(3, 10))
    assert ds.window_weights.tolist() == pytest.approx(w[3:].tolist())
    assert WindowDataset(x, y, seq_len=4).window_weights is None
    bad = w.copy()
    bad[5] = -1.0
    with pytest.raises(ConfigError, match="row 5"):
        WindowDataset(x, y, seq_len=4, weights=bad)
    with pytest.raises(ConfigError, match="weights"):
        WindowDataset(x, y, seq_len=4, weights=w[:-1])


def test_weights_change_what_the_trainer_learns(tmp_path: Path) -> None:
    """Half the training labels are wrong on purpose and weigh 0: only the weighted loss learns the rule."""
    x, y = learnable(800, 1)
    wrong = np.random.default_rng(7).random(800) < 0.6
    y_seen = np.where(wrong, (y + 1) % 3, y)
    weights = np.where(wrong, 0.0, 1.0)
    vx, vy = learnable(400, 2)
    val = WindowDataset(vx, vy, seq_len=4)
    cfg = TrainConfig(epochs=6, batch_size=32, lr=2e-2, patience=10, num_threads=1, seed=3, class_weights=(1, 1, 1))
    scores = {}
    for name, w in (("unweighted", None), ("weighted", weights), ("ones", np.ones(800))):
        model = tiny_model()
        Trainer(model, WindowDataset(x, y_seen, seq_len=4, weights=w), val, cfg, tmp_path / name).fit()
        scores[name] = evaluate(model, val, batch_size=256)
    assert scores["weighted"].scores.f1_macro > 0.8
    assert scores["unweighted"].scores.f1_macro < 0.5
    # weights of 1 are the unweighted loss (up to float summation order)
    assert scores["ones"].loss == pytest.approx(scores["unweighted"].loss, rel=1e-3)


def test_prepare_datasets_passes_the_labels_weights(btc_bars: pl.DataFrame) -> None:
    labelled = label_events(btc_bars.head(6000), "triple_barrier", max_holding_min=30)
    data = prepare_datasets(labelled, seq_len=8, train_frac=0.6, val_frac=0.2, lookahead_min=30,
                            weight_col="uniqueness")
    w = data.train.window_weights
    assert w is not None and w.shape == (len(data.train),) and ((w > 0) & (w <= 1)).all()
    assert prepare_datasets(labelled, seq_len=8, train_frac=0.6, val_frac=0.2, lookahead_min=30).train.weights is None
    with pytest.raises(ConfigError, match="weight_col"):
        prepare_datasets(labelled.drop("uniqueness"), seq_len=8, train_frac=0.6, val_frac=0.2, lookahead_min=30,
                         weight_col="uniqueness")


def test_sequential_bootstrap_weights_are_the_draw_counts_of_the_training_labels(btc_bars: pl.DataFrame) -> None:
    """AFML 4.5 as a training option: each training row weighs (times drawn) x (its label weight); val/test do not."""
    from quantnb.classifier import sequential_bootstrap

    labelled = label_events(btc_bars.head(3000), "triple_barrier", max_holding_min=30)
    kw = {"seq_len": 8, "train_frac": 0.6, "val_frac": 0.2, "lookahead_min": 30}
    data = prepare_datasets(labelled, **kw, weight_col="uniqueness", bootstrap_seed=7)
    train = data.splits.train
    drawable = train.with_row_index("_row").filter(pl.col("label").is_not_null() & pl.col("t1").is_not_null())
    counts = np.bincount(drawable["_row"].to_numpy()[sequential_bootstrap(drawable.select("ts", "t1"), seed=7)],
                         minlength=train.height)
    assert data.train.weights == pytest.approx(counts * train["uniqueness"].fill_null(0.0).to_numpy())
    assert (data.train.weights == 0).any() and (counts > 1).any()  # some labels left out, some drawn twice
    assert data.val.weights == pytest.approx(data.splits.val["uniqueness"].fill_null(0.0).to_numpy())
    again = prepare_datasets(labelled, **kw, weight_col="uniqueness", bootstrap_seed=7)
    assert np.array_equal(again.train.weights, data.train.weights)  # seeded
    assert not np.array_equal(prepare_datasets(labelled, **kw, bootstrap_seed=8).train.weights, counts)
