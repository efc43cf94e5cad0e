from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from quantnb.classifier import FeatureScaler, WindowDataset, build_features, feature_columns, prepare_datasets
from quantnb.errors import ConfigError
from tests.classifier._builders import bars


def brute_force_ends(minutes: list[int], finite: np.ndarray, labels: np.ndarray, seq_len: int,
                     gap_flags: list[bool]) -> list[int]:
    out = []
    for e in range(seq_len - 1, len(minutes)):
        rows = range(e - seq_len + 1, e + 1)
        consecutive = all(minutes[r] - minutes[r - 1] == 1 and not gap_flags[r] for r in rows if r > rows.start)
        if consecutive and all(finite[r] for r in rows) and 0 <= labels[e] <= 2:
            out.append(e)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_windows_never_span_a_gap_or_a_bad_row(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    minutes = np.cumsum(rng.choice([1, 1, 1, 1, 1, 1, 2, 7], size=n)).tolist()
    closes = (100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))).tolist()
    gaps = (rng.random(n) < 0.02).tolist()
    labels = rng.integers(-1, 3, size=n)
    df = bars(closes, minutes, gap_before=gaps, label=labels.tolist())
    feats = build_features(df)
    names = feature_columns(df.columns)
    scaler = FeatureScaler.fit(feats, names)
    seq_len = int(rng.integers(1, 12))
    ds = WindowDataset.from_frame(feats.with_columns(pl.col("label").replace(-1, None)), scaler, seq_len)
    finite = np.isfinite(scaler.transform(feats)).all(axis=1)
    assert ds.ends.tolist() == brute_force_ends(minutes, finite, labels, seq_len, gaps)
    assert len(ds) > 0
    for k in range(len(ds)):
        x, y = ds[k]
        e = int(ds.ends[k])
        assert x.shape == (seq_len, len(names)) and y.item() == labels[e]
        assert np.diff(minutes[e - seq_len + 1:e + 1]).tolist() == [1] * (seq_len - 1)


def test_windows_are_views_over_one_array_and_batches_match_items() -> None:
    rows, n_feat, seq_len = 500, 4, 30
    x = np.random.default_rng(0).normal(size=(rows, n_feat)).astype(np.float32)
    y = np.arange(rows) % 3
    ds = WindowDataset(x, y, seq_len)
    assert len(ds) == rows - seq_len + 1
    item, target = ds[7]
    assert np.shares_memory(item.numpy(), ds.features)  # indexed, not copied
    big = [a for a in vars(ds).values() if isinstance(a, np.ndarray)]
    assert sum(a.nbytes for a in big) <= rows * (n_feat * 4 + 3 * 8)  # rows x features, not x seq_len
    xb, yb = ds.get_batch([7, 0, 100])
    assert xb.shape == (3, seq_len, n_feat) and xb.dtype == torch.float32 and yb.dtype == torch.int64
    assert torch.equal(xb[0], item) and yb[0].item() == target.item() == y[7 + seq_len - 1]
    assert torch.equal(xb[2], torch.from_numpy(x[100:130]))
    assert ds.class_counts().tolist() == np.bincount(y[seq_len - 1:], minlength=3).tolist()


def test_bad_dataset_arguments() -> None:
    with pytest.raises(ConfigError, match="seq_len"):
        WindowDataset(np.zeros((5, 2)), np.zeros(5), 0)
    with pytest.raises(ConfigError, match="labels"):
        WindowDataset(np.zeros((5, 2)), np.zeros(4), 2)
    assert len(WindowDataset(np.zeros((3, 2)), np.zeros(3), 5)) == 0


def test_prepare_datasets_on_real_bars(btc_bars: pl.DataFrame) -> None:
    from quantnb.classifier import label_bars

    labelled = label_bars(btc_bars.head(4000), 30, -0.003, 0.003)
    data = prepare_datasets(labelled, seq_len=32, train_frac=0.7, val_frac=0.15, lookahead_min=30)
    summary = data.summary()
    assert [summary[s]["windows"] for s in ("train", "val", "test")] == [len(data.train), len(data.val),
                                                                         len(data.test)]
    # each split loses seq_len windows at its start: the first row has no return, then seq_len - 1 of context
    assert len(data.train) == data.splits.train.height - 32
    assert data.train.n_features == len(data.features) == 7
    assert sum(summary["val"]["label_distribution"].values()) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="seq_len"):
        prepare_datasets(labelled, seq_len=1000, train_frac=0.7, val_frac=0.15, lookahead_min=30)
    with pytest.raises(ConfigError, match="label"):
        prepare_datasets(btc_bars.head(100), seq_len=8, train_frac=0.7, val_frac=0.15, lookahead_min=30)


def test_unlabelled_bars_give_every_usable_window_for_inference() -> None:
    df = bars([100.0 + i for i in range(12)], minutes=[0, 1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13])
    feats = build_features(df)
    scaler = FeatureScaler.fit(feats, feature_columns(df))
    ds = WindowDataset.from_frame(feats, scaler, seq_len=3, label_col=None)
    # rows 0 and 7 have no return (first bar, first after the gap): windows end at 3..6 and 10, 11
    assert ds.ends.tolist() == [3, 4, 5, 6, 10, 11]
    assert (ds.targets == -1).all() and ds.class_counts().tolist() == [0, 0, 0]
