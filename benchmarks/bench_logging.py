"""Run-logging overhead: ETL wall time with session log, heartbeats and checkpoints on vs off,
and the per-call cost of the session log's sink against loguru's alternatives.

    .venv/bin/python benchmarks/bench_logging.py [--copies 12] [--rounds 3]

Goal (issue 2): the ETL with run logging costs at most 3% more wall time than without.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import polars as pl
from loguru import logger

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "samples" / "binance_usdm" / "BTCUSDT_20240808.gz"


def _project(copies: int) -> Path:
    root = Path(tempfile.mkdtemp(prefix="qnb-bench-"))
    (root / "pyproject.toml").write_text("")
    (root / "notebooks").mkdir()
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    for i in range(copies):  # distinct days so every copy is its own item and output
        shutil.copy(SAMPLE, raw / f"BTCUSDT_202408{10 + i:02d}.gz")
    return root


def run_with_logging(root: Path) -> float:
    from quantnb.stages.etl import EtlParams, run_etl

    params = EtlParams(project_dir=str(root), input_globs=["data/raw/*.gz"], output_dir="data/on", n_workers=1,
                       console_level=None)
    t0 = time.perf_counter()
    run_etl(params)
    return time.perf_counter() - t0


def run_bare(root: Path) -> float:
    """The same work with no sink, heartbeat or checkpoint: ingest, shard, merge, write."""
    from quantnb.data import ingest_file, merge_parts

    logger.remove()
    t0 = time.perf_counter()
    parts = []
    out = root / "data" / "off"
    for path in sorted((root / "data" / "raw").glob("*.gz")):
        bars = ingest_file(path).bars
        shard = out / "parts" / f"{path.name}.parquet"
        shard.parent.mkdir(parents=True, exist_ok=True)
        bars.write_parquet(shard, compression="zstd")
        parts.append(pl.read_parquet(shard))
    for (symbol, day), frame in sorted(merge_parts(parts).items()):
        dest = out / symbol / f"{day}.parquet"
        dest.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(dest, compression="zstd")
    return time.perf_counter() - t0


def per_call_us(n: int = 50_000) -> dict[str, float]:
    from quantnb.runs import LOG_FORMAT

    out = {}
    tmp = Path(tempfile.mkdtemp(prefix="qnb-sink-"))
    for name, kwargs in {
        "quantnb session sink (line-buffered, enqueue=False)": {"buffering": 1, "enqueue": False},
        "loguru default (block-buffered)": {"enqueue": False},
        "loguru enqueue=True": {"enqueue": True},
    }.items():
        logger.remove()
        sink = logger.add(str(tmp / f"{len(out)}.log"), format=LOG_FORMAT, level="DEBUG", **kwargs)
        t0 = time.perf_counter()
        for i in range(n):
            logger.info("line {} of the benchmark", i)
        elapsed = time.perf_counter() - t0
        logger.remove(sink)  # enqueue=True: waits for the queue to drain (not counted above)
        out[name] = elapsed / n * 1e6
    shutil.rmtree(tmp)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--copies", type=int, default=12, help="copies of the Binance capture (items)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    args = ap.parse_args()
    on, off = [], []
    for r in range(args.rounds):
        for label, fn, acc in (("on", run_with_logging, on), ("off", run_bare, off)):
            root = _project(args.copies)
            try:
                acc.append(fn(root))
            finally:
                logger.remove()
                shutil.rmtree(root)
            print(f"round {r + 1}: logging {label}: {acc[-1]:.2f} s")
    m_on, m_off = statistics.median(on), statistics.median(off)
    print(f"\nETL of {args.copies} x {SAMPLE.name} (n_workers=1), median of {args.rounds}:")
    print(f"  run logging on : {m_on:.2f} s")
    print(f"  run logging off: {m_off:.2f} s")
    print(f"  overhead       : {100 * (m_on / m_off - 1):+.1f}%  (goal <= +3%)")
    print("\nPer logging call (50k calls, file sink, same format):")
    for name, us in per_call_us().items():
        print(f"  {name:55s} {us:6.2f} us")


if __name__ == "__main__":
    main()
