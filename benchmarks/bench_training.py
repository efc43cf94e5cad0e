"""Training benchmark: samples/s of quantnb's Trainer against a bare PyTorch loop, same model and batches.

Both loops train the same ``HybridTCNLSTM`` (32 TCN channels, 3 blocks, LSTM 64) from the same
initial weights on the same real windows (BTC-PERP month, ``SELL_0004_BUY_0008_1h`` labels,
seq_len 60, batch 256) in the same order (``numpy.random.default_rng([seed, epoch])``), with the
same class-weighted cross-entropy, AdamW, gradient clipping and cosine schedule, and run the same
validation forward pass each epoch. The Trainer adds what the stage pays for: deterministic
algorithms, a progress line every 10 batches and the epoch lines into a DEBUG loguru file sink,
F1 scores, and ``best.pt`` / ``last.pt`` checkpoints (with optimiser and RNG state) written
atomically with fsync every epoch. Reported: training samples per second of wall time (training
+ validation + checkpointing), best and median of 3 rounds in alternating order (T-B, B-T, T-B),
and the same from process CPU time, which a busy shared machine disturbs less than wall time.
Goal: Trainer >= 0.9x the bare loop.

Run: .venv/bin/python benchmarks/bench_training.py [n_train_windows] [rounds] [torch_threads]
(1 thread gives the steadiest figures on a busy machine; default torch's own setting.)
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import torch
from loguru import logger
from torch import nn
from torch.nn import functional as F

from quantnb.classifier import (
    HybridTCNLSTM,
    TrainConfig,
    Trainer,
    WindowDataset,
    inverse_frequency_weights,
    label_bars,
    prepare_datasets,
    seed_everything,
)

ROOT = Path(__file__).resolve().parents[1]
OHLCV = ROOT / "data" / "samples" / "ohlcv" / "BTC-PERP_20211231_20220201_1m.csv"
EPOCHS, SEED = 2, 11
MODEL = {"tcn_channels": 32, "kernel_size": 3, "n_blocks": 3, "dropout": 0.1, "lstm_hidden": 64, "lstm_layers": 1}


def subset(ds: WindowDataset, n: int) -> WindowDataset:
    out = WindowDataset(ds.features, ds.labels, ds.seq_len)
    out.ends = ds.ends[:n]
    return out


def bare_loop(model: nn.Module, train: WindowDataset, val: WindowDataset, cfg: TrainConfig) -> None:
    weight = torch.tensor(inverse_frequency_weights(train.class_counts()), dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(train))
        for b in range(math.ceil(len(train) / cfg.batch_size)):
            x, y = train.get_batch(order[b * cfg.batch_size:(b + 1) * cfg.batch_size])
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y, weight=weight)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            opt.step()
        model.eval()
        with torch.no_grad():
            for start in range(0, len(val), cfg.eval_batch_size):
                x, y = val.get_batch(np.arange(start, min(start + cfg.eval_batch_size, len(val))))
                model(x).argmax(dim=1)
        sched.step()


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def line(name: str, samples: int, runs: list[tuple[float, float]]) -> tuple[float, float, float]:
    walls, cpus = [r[0] for r in runs], [r[1] for r in runs]
    best, med, cpu = samples / min(walls), samples / statistics.median(walls), samples / min(cpus)
    print(f"  {name:18s}: {best:7,.0f} samples/s best, {med:7,.0f} median, {cpu:7,.0f} per CPU-second  "
          f"(wall {', '.join(f'{w:.1f}' for w in walls)} s)")
    return best, med, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n_train", nargs="?", type=int, default=3072, help="training windows (default 3072)")
    parser.add_argument("rounds", nargs="?", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("torch_threads", nargs="?", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    n_train, rounds = args.n_train, args.rounds
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    bars = (pl.read_csv(OHLCV).with_columns(pl.col("timestamp").str.to_datetime(time_unit="us", time_zone="UTC")
                                            .alias("ts")).select("ts", "open", "high", "low", "close", "volume"))
    data = prepare_datasets(label_bars(bars, 60, -0.004, 0.008), seq_len=60, train_frac=0.7, val_frac=0.15,
                            lookahead_min=60)
    train, val = subset(data.train, n_train), subset(data.val, n_train // 4)
    cfg = TrainConfig(epochs=EPOCHS, batch_size=256, seed=SEED, log_every_batches=10, patience=100,
                      num_threads=torch.get_num_threads(), device="cpu")
    n_feat = len(data.features)
    print(f"{len(train):,} train / {len(val):,} val windows x seq_len 60 x {n_feat} features, batch 256, "
          f"{EPOCHS} epochs, torch {torch.__version__}, {torch.get_num_threads()} threads")

    def make() -> nn.Module:
        seed_everything(SEED)
        return HybridTCNLSTM(n_feat, **MODEL)

    with tempfile.TemporaryDirectory() as tmp:
        logger.add(Path(tmp) / "train.log", level="DEBUG")  # the stage's session log
        bare_loop(make(), subset(train, 512), subset(val, 256), TrainConfig(epochs=1, batch_size=256))  # warm-up
        trainer_runs, bare_runs = [], []
        for r in range(rounds):
            ckpt = Path(tmp) / f"ckpt{r}"
            jobs = [(trainer_runs, lambda ckpt=ckpt: Trainer(make(), train, val, cfg, ckpt).fit()),
                    (bare_runs, lambda: bare_loop(make(), train, val, cfg))]
            for runs, job in (jobs if r % 2 == 0 else jobs[::-1]):
                runs.append(timed(job))
        with open(Path(tmp) / "train.log") as fh:
            n_log = sum(1 for _ in fh)
    print(f"  (Trainer: {n_log} DEBUG log lines over {rounds} runs, best.pt + last.pt per epoch, fsynced)")
    samples = EPOCHS * len(train)
    bare = line("bare PyTorch loop", samples, bare_runs)
    ours = line("quantnb Trainer", samples, trainer_runs)
    for what, i in (("best wall", 0), ("median wall", 1), ("CPU time", 2)):
        ratio = ours[i] / bare[i]
        print(f"  ratio Trainer / bare ({what:11s}) = {ratio:.3f}  -> {ratio / 0.9:.2f}x the 0.9 goal")


if __name__ == "__main__":
    main()
