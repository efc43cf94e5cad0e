"""Labelling benchmark: rows per second of ``quantnb.research.label_bars`` on 10M one-minute bars.

The bundled BTC-PERP month (45,031 real bars) is repeated, each copy shifted in time to follow the
previous one, until 10,000,000 rows; the label is computed with a 60-minute lookahead at
-0.4 % / +0.8 % (``SELL_0004_BUY_0008_1h``). Timed: input validation (ts dtype, minute grid,
strictly increasing), the gap-aware forward return, the labels and the exclusion filter; best and
median of 5 runs, with and without the ETL's ``gap_before`` column. Goal: >= 5M rows/s.

Run: .venv/bin/python benchmarks/bench_labelling.py [n_rows]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import polars as pl
from loguru import logger

from quantnb.research import format_distribution, label_bars, label_distribution, label_suffix

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


def bench(df: pl.DataFrame, runs: int = 5) -> tuple[float, float, pl.DataFrame]:
    times, out = [], df
    for _ in range(runs):
        t0 = time.perf_counter()
        out = label_bars(df, 60, -0.004, 0.008)
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times), out


def main() -> None:
    logger.remove()
    logger.add(sys.stderr, level="INFO")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n_rows", nargs="?", type=int, default=10_000_000, help="rows to label (default 10M)")
    n_rows = parser.parse_args().n_rows
    df = repeated(month(), n_rows)
    print(f"labelling {df.height:,} rows ({label_suffix(60, -0.004, 0.008)}), polars {pl.__version__}, "
          f"{pl.thread_pool_size()} threads")
    for name, frame in (("ts only", df), ("with gap_before", df.with_columns(gap_before=pl.lit(False)))):
        best, median, out = bench(frame)
        rate = df.height / best
        print(f"  {name:16s} best {best:.3f} s  median {median:.3f} s  -> {rate / 1e6:.1f}M rows/s "
              f"(median {df.height / median / 1e6:.1f}M)  = {rate / GOAL_ROWS_PER_S:.1f}x the 5M rows/s goal")
    dist = format_distribution(label_distribution(out))
    print(f"  labelled {out.height:,} rows, {df.height - out.height} excluded; {dist}")


if __name__ == "__main__":
    main()
