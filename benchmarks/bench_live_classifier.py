"""Time to the first decision of a replay: the agent with the classifier against the same agent without it.

A replay first feeds every bar before its start through the live feature engines (the warm-up;
the demo's replay has 34,950 bars of history), then decides on the first traded bar. With a
classifier bundle the warm-up also needs the classifier's probabilities for the window the
first observation reads. This script builds both agents (untrained weights: the cost does not
depend on them) on the bundled real BTC-PERP month, or loads two agent runs of a project, and
prints for each the seconds from ``Trader.run()`` to the end of the first decided bar
(``max_steps=1``), the median of ``--repeats`` runs, and the ratio (goal: <= 1.5).

Run: .venv/bin/python benchmarks/bench_live_classifier.py [--history-bars N] [--repeats R]
     [--project DIR --plain AGENT_RUN_ID --clf AGENT_CLF_RUN_ID [--bars-glob GLOB]]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MONTH = REPO / "data" / "samples" / "ohlcv" / "BTC-PERP_20211231_20220201_1m.csv"


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--history-bars", type=int, default=34_950, help="warm-up bars before the first traded one")
    p.add_argument("--repeats", type=int, default=3, help="runs per agent (median reported)")
    p.add_argument("--project", type=Path, default=None, help="a project whose runs/ holds both agents")
    p.add_argument("--plain", default=None, help="agent run id without classifier (with --project)")
    p.add_argument("--clf", default=None, help="agent run id with classifier (with --project)")
    p.add_argument("--bars-glob", default="data/processed/unknown/perp/BTC-PERP/*.parquet",
                   help="the project's processed bars (with --project)")
    p.add_argument("--seq-len", type=int, default=32, help="synthetic classifier's window (the demo's range: 16-32)")
    return p.parse_args()


def _month():  # noqa: ANN202 - polars frame
    import polars as pl

    raw = pl.read_csv(MONTH)
    ts = pl.col("timestamp").str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_zone="UTC").dt.cast_time_unit("us")
    return raw.with_columns(ts.alias("ts")).drop("timestamp").select("ts", "open", "high", "low", "close", "volume")


def _synthetic(runs: Path, seq_len: int) -> tuple[str, str]:
    """Save a plain and a classifier agent bundle (the demo's sizes, untrained) under ``runs``."""
    import torch
    from stable_baselines3 import SAC

    from quantnb.agent import (
        ActionInterpreter,
        AgentMetadata,
        ClassifierSignal,
        FeatureScaler,
        FillModel,
        ObservationBuilder,
        TradingEnv,
        compute_features,
        save_agent_bundle,
    )
    from quantnb.classifier import HybridTCNLSTM, build_features, feature_columns, save_model_bundle

    torch.manual_seed(0)
    bars = _month().head(6_000)
    names = feature_columns(bars)
    clf_dir = runs / "training_bench" / "model"
    save_model_bundle(clf_dir, HybridTCNLSTM(len(names), tcn_channels=16, n_blocks=2, lstm_hidden=32).eval(),
                      FeatureScaler.fit(build_features(bars, names), names), {"seq_len": seq_len})
    ids = []
    for train_id, clf in (("agent_bench", None), ("agent_bench_clf", ClassifierSignal.load(clf_dir))):
        feats = compute_features(bars, warmup_bars=500)
        if clf is not None:
            feats = feats.hstack(clf.batch(bars).drop("ts"))
        cols = [c for c in feats.columns if c != "ts"]
        scaler = FeatureScaler.fit(feats, cols)
        env = TradingEnv(bars, observation_builder=ObservationBuilder(cols, 30, scaler),
                         action_interpreter=ActionInterpreter(1.0, 0.0), fill_model=FillModel(4.0, 1.0),
                         features=feats, warmup_bars=500, max_episode_steps=50)
        model = SAC("MlpPolicy", env, buffer_size=100, seed=0, device="cpu", verbose=0)
        meta = AgentMetadata(window=30, fee_bps=4.0, slippage_bps=1.0, max_position_frac=1.0, deadband_frac=0.0,
                             warmup_bars=500, symbol="BTC-PERP", timeframe="1m",
                             classifier={} if clf is None else {"train_id": "training_bench", "seq_len": seq_len})
        save_agent_bundle(runs / train_id, model, scaler, meta, classifier_dir=None if clf is None else clf_dir)
        ids.append(train_id)
    return ids[0], ids[1]


def _first_decision_s(runs: Path, train_id: str, bars, history: int) -> float:  # noqa: ANN001
    import shutil

    from quantnb.live import RiskLimits, SessionSettings, build_trader, load_live_config

    cfg = load_live_config(runs, train_id)
    eval_start = (cfg.bundle.metadata.data_span or {}).get("eval", [None])[0]
    import datetime as dt

    start = bars["ts"].search_sorted(dt.datetime.fromisoformat(eval_start)) if eval_start else history
    start = max(start, history)
    window = bars.slice(start - history, history + 5)
    shutil.rmtree(cfg.out_dir, ignore_errors=True)  # no recorded state: a fresh session each time
    t0 = time.perf_counter()
    trader = build_trader(cfg, SessionSettings(mode="replay", limits=RiskLimits(0.9, 1.0), max_steps=1),
                          replay_bars=window, replay_start_ts=window["ts"][history])
    stats = trader.run()
    elapsed = time.perf_counter() - t0
    if stats.steps != 1:
        raise SystemExit(f"{train_id}: expected one decided bar, got {stats.steps}")
    return elapsed


def main() -> None:
    """Build or load the two agents and print their times to the first decision."""
    args = _args()
    import torch
    from loguru import logger

    torch.set_num_threads(1)
    logger.remove()
    if args.project is not None:
        if not (args.plain and args.clf):
            raise SystemExit("--project needs --plain and --clf (agent run ids)")
        import polars as pl

        runs = args.project / "runs"
        bars = pl.read_parquet(sorted(args.project.glob(args.bars_glob))).sort("ts")
        plain, clf = args.plain, args.clf
        tmp = None
    else:
        tmp = tempfile.TemporaryDirectory()
        runs = Path(tmp.name) / "runs"
        plain, clf = _synthetic(runs, args.seq_len)
        bars = _month()
    times: dict[str, list[float]] = {plain: [], clf: []}
    for _ in range(args.repeats):  # interleaved: load changes hit both alike
        for train_id in (plain, clf):
            times[train_id].append(_first_decision_s(runs, train_id, bars, args.history_bars))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"history bars: {args.history_bars:,}; repeats: {args.repeats}; load average: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for k, v in times.items():
        print(f"{k}: first decision after {med[k]:.2f} s (runs: {', '.join(f'{x:.2f}' for x in v)})")
    print(f"ratio classifier / plain: {med[clf] / med[plain]:.2f} (goal <= 1.5)")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
