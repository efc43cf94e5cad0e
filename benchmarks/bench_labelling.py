"""Labelling benchmark: rows per second of ``label_bars`` and ``label_events`` (both methods) on one-minute bars.

The bundled BTC-PERP month (45,031 real bars) is repeated, each copy shifted in time to follow the
previous one, until ``n_rows`` (default 10,000,000); fixed-horizon labels use a 60-minute
lookahead at -0.4 % / +0.8 % (``SELL_0004_BUY_0008_1h``). Timed, best and median of ``runs``:

- ``label_bars``: input validation (ts dtype, minute grid, strictly increasing), the gap-aware
  forward return, the labels and the exclusion filter, with and without ``gap_before``
  (goal: >= 5M rows/s);
- ``label_events`` fixed horizon: the same plus ``t1``, AFML uniqueness and return weights;
- ``label_events`` triple barrier: EWM volatility (60 min), barriers at 1x, a 60-minute vertical
  barrier, ``t1``, uniqueness and return weights; and with a CUSUM filter at 0.5 %;
- the bundled month alone, for each method (what the labelling stage does per instrument-month).

Run: .venv/bin/python benchmarks/bench_labelling.py [n_rows] [runs]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
from loguru import logger

from quantnb.classifier import format_distribution, label_bars, label_distribution, label_events, label_suffix

ROOT = Path(__file__).resolve().parents[1]
OHLCV = ROOT / "data" / "samples" / "ohlcv" / "BTC-PERP_20211231_20220201_1m.csv"
GOAL_ROWS_PER_S = 5e6


def month() -> pl.DataFrame:
    return (pl.read_csv(OHLCV)
            .with_columns(pl.col("timestamp").str.to_datetime(time_unit="us", time_zone="UTC").alias("ts"))
            .select("ts", "open", "high", "low", "close", "volume"))


def repeated(base: pl.DataFrame, n_rows: int) -> pl.DataFrame:
    copies = -(-n_rows // base.height)
    span = base.height  # minutes per copy (the sample has no missing minute)
    return pl.concat([base.with_columns(pl.col("ts") + pl.duration(minutes=i * span)) for i in range(copies)]
                     ).head(n_rows).rechunk()


def bench(fn: Callable[[], pl.DataFrame], runs: int) -> tuple[float, float, pl.DataFrame]:
    times, out = [], pl.DataFrame()
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times), out


def cases(df: pl.DataFrame) -> dict[str, Callable[[], pl.DataFrame]]:
    gap = df.with_columns(gap_before=pl.lit(False))
    return {
        "label_bars ts only": lambda: label_bars(df, 60, -0.004, 0.008),
        "label_bars gap_before": lambda: label_bars(gap, 60, -0.004, 0.008),
        "fixed_horizon +weights": lambda: label_events(gap, "fixed_horizon", lookahead_min=60),
        "triple_barrier": lambda: label_events(gap, "triple_barrier", max_holding_min=60),
        "triple_barrier cusum": lambda: label_events(gap, "triple_barrier", max_holding_min=60,
                                                     cusum_threshold=0.005),
    }


def report(df: pl.DataFrame, runs: int, with_goal: bool) -> None:
    for name, fn in cases(df).items():
        best, median, out = bench(fn, runs)
        rate = df.height / best
        goal = f"  = {rate / GOAL_ROWS_PER_S:.1f}x the 5M rows/s goal" if with_goal else ""
        print(f"  {name:24s} best {best:.3f} s  median {median:.3f} s  -> {rate / 1e6:.1f}M rows/s{goal}  "
              f"({out.height:,} labels; {format_distribution(label_distribution(out))})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n_rows", nargs="?", type=int, default=10_000_000, help="rows to label (default 10M)")
    parser.add_argument("runs", nargs="?", type=int, default=5, help="timed runs per case (default 5)")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="INFO")
    n_rows, runs = args.n_rows, args.runs
    base = month()
    print(f"polars {pl.__version__}, {pl.thread_pool_size()} threads; {label_suffix(60, -0.004, 0.008)}")
    print(f"the bundled month ({base.height:,} rows):")
    report(base, runs, with_goal=False)
    df = repeated(base, n_rows)
    print(f"{df.height:,} rows:")
    report(df, runs, with_goal=True)


if __name__ == "__main__":
    main()
