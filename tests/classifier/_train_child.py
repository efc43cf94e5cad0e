"""Child process for the kill/resume test: a small seeded training on real bars.

usage: python -m tests.classifier._train_child CHECKPOINT_DIR RESULT_JSON [--resume] [--hang-at EPOCH]

With --hang-at E the process announces every batch on stdout and stops in the middle of epoch E
(it sleeps, waiting for the test to SIGKILL it).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from quantnb.classifier import (
    HybridTCNLSTM,
    TrainConfig,
    Trainer,
    evaluate,
    label_bars,
    prepare_datasets,
    seed_everything,
)
from quantnb.classifier._stats import BatchStats
from tests.classifier._builders import read_btc_bars

CONFIG = TrainConfig(epochs=5, batch_size=32, lr=3e-3, patience=10, seed=7, num_threads=1, log_every_batches=10,
                     device="cpu")


def build():
    labelled = label_bars(read_btc_bars(2500), 15, -0.002, 0.002)
    data = prepare_datasets(labelled, seq_len=16, train_frac=0.6, val_frac=0.2, lookahead_min=15)
    seed_everything(CONFIG.seed)
    model = HybridTCNLSTM(len(data.features), tcn_channels=8, kernel_size=2, n_blocks=2, dropout=0.2,
                          lstm_hidden=8, lstm_layers=2)
    return data, model


def main(argv: list[str]) -> None:
    ckpt_dir, result_path = Path(argv[0]), Path(argv[1])
    resume = "--resume" in argv
    hang_at = int(argv[argv.index("--hang-at") + 1]) if "--hang-at" in argv else None
    data, model = build()

    def on_batch(b: BatchStats) -> None:
        if hang_at is None:
            return
        print(f"BATCH {b.epoch} {b.batch} {b.n_batches}", flush=True)
        if b.epoch == hang_at and b.batch == b.n_batches // 2:
            time.sleep(300)

    result = Trainer(model, data.train, data.val, CONFIG, ckpt_dir, on_batch_end=on_batch).fit(resume=resume)
    test = evaluate(model, data.test)
    result_path.write_text(json.dumps({
        "history": [h.to_dict() for h in result.history], "best_f1_macro": result.best_f1_macro,
        "best_epoch": result.best_epoch, "resumed_from_epoch": result.resumed_from_step,
        "test": test.to_dict()}))


if __name__ == "__main__":
    main(sys.argv[1:])
