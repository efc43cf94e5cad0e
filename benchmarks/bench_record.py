"""Recorder benchmark: frames per second per core on loopback, raw sink alone vs raw + Parquet + ClickHouse.

A loopback Bybit v5 server (its own process) streams the real ``orderbook.200.BTCUSDT``
sample (1 snapshot + 413 deltas, ~500 bytes and ~17 levels per delta) in an endless loop as
fast as the socket takes it; the recorder (this process) keeps the live book, builds the
minute features and writes the sinks, flushing every ``flush_every_s``. Reported per
configuration:

- frames/s per core = frames received / CPU seconds of the recorder process (user + system,
  all its threads: websocket, book, sinks, chDB); goal >= 50,000 with all three sinks;
- wall-clock frames/s (bounded by the server on a shared 2-core machine);
- resident memory at 10 %, 50 % and the end of the run (flat = no growth with time), and
  sampled over the run;
- shards written, backpressure pauses, and the events in Parquet and in ClickHouse (equal).

Run: .venv/bin/python benchmarks/bench_record.py [seconds_per_config] [configs]  (the issue asks 600;
configs e.g. ``raw+parquet+clickhouse,raw``; default: the three above)
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from loguru import logger

GOAL = 50_000.0


def _serve(port_q: mp.Queue, stop: mp.Event) -> None:  # type: ignore[valid-type]
    from quantnb.testing.bybit_ws_server import BybitStreamServer

    srv = BybitStreamServer(loop=True).start()
    port_q.put(srv.port)
    stop.wait()
    srv.stop()


def run_config(sinks: tuple[str, ...], seconds: float, url: str, tmp: Path) -> dict[str, float]:
    """Record for ``seconds`` with ``sinks``; return throughput and memory figures."""
    from quantnb.record import Recorder, RecorderConfig

    cfg = RecorderConfig(
        venue="bybit", market="linear", symbols=("BTCUSDT",), depth=200, channels=("book",), ws_url=url,
        raw_dir=tmp / "raw", parquet_dir=tmp / "parquet" if "parquet" in sinks else None,
        clickhouse="clickhouse" in sinks, clickhouse_path=tmp / "ch", flush_every_s=5.0,
        progress_every_s=max(seconds / 4, 5.0), duration_s=seconds)
    rec = Recorder(cfg)
    proc = psutil.Process()
    rss: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        t0 = time.monotonic()
        while not done.wait(1.0):
            rss.append((time.monotonic() - t0, proc.memory_info().rss / 2**20))

    sampler = threading.Thread(target=sample, daemon=True)
    cpu0, t0 = proc.cpu_times(), time.monotonic()
    th0 = {t.id: t.user_time + t.system_time for t in proc.threads()}
    sampler.start()
    rec.run()
    done.set()
    cpu1, wall = proc.cpu_times(), time.monotonic() - t0
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    main_tid = threading.get_native_id()
    main_cpu = next(t.user_time + t.system_time for t in proc.threads() if t.id == main_tid) - th0.get(main_tid, 0.0)

    def at(frac: float) -> float:
        if not rss:
            return float("nan")
        return rss[min(len(rss) - 1, int(frac * len(rss)))][1]

    return {"frames": rec.messages, "cpu_s": cpu, "wall_s": wall, "per_core": rec.messages / max(cpu, 1e-9),
            "wall_rate": rec.messages / wall, "rss10": at(0.1), "rss50": at(0.5), "rss_end": at(1.0),
            "gaps": rec.counters.total("gaps"), "pauses": rec.backpressure_pauses,
            "shards": rec.parquet.n if rec.parquet is not None else 0, "rss": rss,
            "pq_events": rec.parquet.rows if rec.parquet is not None else None,
            "ch_events": rec.clickhouse.rows if rec.clickhouse is not None else None,
            "main_us": 1e6 * main_cpu / max(rec.messages, 1), "other_us": 1e6 * (cpu - main_cpu) / max(rec.messages, 1),
            "sys_us": 1e6 * (cpu1.system - cpu0.system) / max(rec.messages, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("seconds", nargs="?", type=float, default=600.0, help="seconds per configuration (600)")
    parser.add_argument("configs", nargs="?", help="sink sets, e.g. raw+parquet+clickhouse,raw (default: raw, "
                                                   "raw+parquet, raw+parquet+clickhouse)")
    args = parser.parse_args()
    seconds = args.seconds
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    ctx = mp.get_context("spawn")
    q, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=_serve, args=(q, stop), daemon=True)
    server.start()
    url = f"ws://127.0.0.1:{q.get(timeout=60)}/v5/public/linear"
    print(f"loopback Bybit server pid {server.pid}; recorder pid {os.getpid()}; {seconds:.0f} s per configuration; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    rows = []
    try:
        configs = [("raw",), ("raw", "parquet"), ("raw", "parquet", "clickhouse")]
        if args.configs:  # e.g. raw+parquet+clickhouse,raw
            configs = [tuple(c.split("+")) for c in args.configs.split(",")]
        for sinks in configs:
            with tempfile.TemporaryDirectory() as tmp:
                r = run_config(sinks, seconds, url, Path(tmp))
            rows.append((sinks, r))
            print(f"{'+'.join(sinks):24s} frames {r['frames']:>10,}  cpu {r['cpu_s']:7.1f} s  "
                  f"per core {r['per_core']:>9,.0f} frames/s ({r['per_core'] / GOAL:.2f}x goal)  "
                  f"wall {r['wall_rate']:>9,.0f} frames/s  "
                  f"RSS MB 10%/50%/end {r['rss10']:.0f}/{r['rss50']:.0f}/{r['rss_end']:.0f}  gaps {r['gaps']}  "
                  f"CPU us/frame: event-loop thread {r['main_us']:.1f}, other threads {r['other_us']:.1f} "
                  f"(system, all threads {r['sys_us']:.1f}); shards {r['shards']}, backpressure pauses "
                  f"{r['pauses']}" + ("" if r["ch_events"] is None else
                                      f"; events in Parquet {r['pq_events']:,}, in ClickHouse {r['ch_events']:,}"))
            if len(r["rss"]) > 1:
                step = max(1, len(r["rss"]) // 12)
                print("    RSS MB over the run: " + " ".join(f"{t:.0f}s:{m:.0f}" for t, m in r["rss"][::step]))
    finally:
        stop.set()
        server.join(10)
    for sinks, r in rows:
        print(f"{'+'.join(sinks)}: {r['per_core'] / GOAL:.2f} x the goal ({GOAL:,.0f} frames/s per core); memory "
              f"growth 10%->end {r['rss_end'] - r['rss10']:+.0f} MB")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
