"""Cost of the execution-cost model: environment steps/s flat vs all switches on, and book-walk fills/s.

Usage: PYTHONPATH=lib python benchmarks/bench_costs.py [--steps N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]


def _bars(n: int) -> pl.DataFrame:
    raw = pl.read_csv(ROOT / "data" / "samples" / "ohlcv" / "BTC-PERP_20211231_20220201_1m.csv", n_rows=n)
    ts = pl.col("timestamp").str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_zone="UTC").dt.cast_time_unit("us")
    return raw.with_columns(ts.alias("ts")).drop("timestamp").with_columns(
        spread_bps_mean=pl.lit(0.5), bid_depth_10=pl.lit(40.0), ask_depth_10=pl.lit(25.0))


def _steps_per_s(bars: pl.DataFrame, steps: int, **kw) -> float:
    from quantnb.agent import (
        ActionInterpreter,
        FeatureScaler,
        FillModel,
        ObservationBuilder,
        TradingEnv,
        compute_features,
    )

    feats = compute_features(bars, warmup_bars=100)
    names = [c for c in feats.columns if c != "ts"]
    fm = kw.pop("fill_model", FillModel(4.0, 1.0))
    env = TradingEnv(bars, observation_builder=ObservationBuilder(names, 8, FeatureScaler.fit(feats, names)),
                     action_interpreter=ActionInterpreter(2.0, 0.0), fill_model=fm, features=feats,
                     warmup_bars=100, **kw)
    env.reset()
    rng = np.random.default_rng(0)
    acts = rng.uniform(-1, 1, steps).astype(np.float32)
    t0 = time.perf_counter()
    for i in range(steps):
        _, _, term, trunc, _ = env.step(acts[i : i + 1])
        if term or trunc:
            env.reset()
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5_000, help="environment steps per configuration")
    args = ap.parse_args()
    from quantnb.agent import MARGIN_TIERS, FillModel, FundingRates, MarketRules, walk_book

    bars = _bars(args.steps + 400)
    flat = _steps_per_s(bars, args.steps)
    full = _steps_per_s(bars, args.steps, fill_model=FillModel(4.0, 1.0, cross_spread=True, impact_coef=0.7),
                        market_rules=MarketRules.for_venue("binance_usdm", "BTCUSDT"),
                        funding=FundingRates(constant_rate=1e-4),
                        margin_tiers=MARGIN_TIERS[("binance_usdm", "BTCUSDT")])
    levels = [(100.0 + i * 0.01, 1.0) for i in range(500)]
    n = 20_000
    t0 = time.perf_counter()
    for i in range(n):
        walk_book(levels, 50.0 + (i % 400))
    walks = n / (time.perf_counter() - t0)
    print(json.dumps({"env_steps_per_s_flat": round(flat), "env_steps_per_s_all_costs": round(full),
                      "overhead_frac": round(flat / full - 1, 3), "book_walks_per_s_500_levels": round(walks)}))


if __name__ == "__main__":
    main()
