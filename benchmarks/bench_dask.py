"""ETL on a 2-worker local Dask cluster against the 2-process local executor; a scaling estimate.

Inputs: the Binance USD-M capture in ``data/samples`` replayed (as in ``bench_etl.py``) to
``--messages`` messages per file (1M by default, about 3.5 s of one core), copied to 16 files
under different names and folders of a throwaway project. Each round runs :func:`quantnb.stages.etl.run_etl` once with
``executor="local"`` and once with ``executor="dask"`` (the order alternates between rounds),
timing the whole call: run set-up, starting the workers (process pool or LocalCluster), the
16 files, the merge and the run record. POLARS_MAX_THREADS=1, so each worker is one core.

Then, on a fresh LocalCluster: the per-file cost (one file ingested in-process), the start
and stop of the cluster, and the scheduler's cost per task (no-op tasks through quantnb's
task wrapper, which forwards log records), which feed the estimate printed at the end:

    T(N machines, k workers each) ~ T_start + ceil(F / (N k)) * c_file + F * o_task + T_merge

The machine is shared: the load average is printed with every round and the figures can be
noisy; compare the median ratio, and rerun when the load is low. The CPU seconds of all the
run's processes (driver, scheduler, nannies, workers) are printed too: they vary less than
wall time on a machine whose speed changes under other tenants.

Usage: ``python benchmarks/bench_dask.py [--rounds 3] [--files 16] [--messages 1000000]``
(``--messages 0``: plain copies of the sample, where the fixed cost of starting and stopping the
cluster dominates).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import math
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("POLARS_MAX_THREADS", "1")  # one core per worker: before polars is imported

from loguru import logger  # noqa: E402

from quantnb.data import ingest_file  # noqa: E402
from quantnb.stages.etl import EtlParams, run_etl  # noqa: E402

HERE = Path(__file__).resolve().parent
N_WORKERS = 2


def _make_binance(dst: Path, n_messages: int) -> Path:
    spec = importlib.util.spec_from_file_location("bench_etl", HERE / "bench_etl.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_binance(dst, n_messages)


def _project(tmp: Path, n_files: int, n_messages: int) -> tuple[Path, int]:
    root = tmp / "proj"
    (root / "data").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'bench-dask'\n")
    sample = HERE.parent / "data" / "samples" / "binance_usdm" / "BTCUSDT_20240808.gz"
    capture = _make_binance(tmp, n_messages) if n_messages else sample
    if not n_messages:  # plain copies of the sample capture
        n_messages = sum(1 for _ in gzip.open(sample))
    for i in range(n_files):  # 16 replayed captures, different names and folders
        dest = root / "data" / "raw" / f"capture{i % 4}" / f"BTCUSDT_2024{(i // 28) + 8:02d}{(i % 28) + 1:02d}.gz"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(capture, dest)
    return root, n_messages


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process and of its reaped children (pool and Dask workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _run(root: Path, executor: str, tag: str) -> tuple[float, float]:
    """(wall s, CPU s of every process of the run) of one ETL run."""
    c0, t0 = _cpu_s(), time.perf_counter()
    result = run_etl(EtlParams(input_globs=["data/raw/*/*.gz"], output_dir=f"data/out_{tag}", n_workers=N_WORKERS,
                               executor=executor, project_dir=str(root), console_level=None))
    wall = time.perf_counter() - t0
    for th in threading.enumerate():  # the LocalCluster is closed in the background: its workers' CPU too
        if th.name == "quantnb-dask-close":
            th.join()
    if result.status != "completed":
        raise SystemExit(f"{executor} run ended {result.status}: {result.quarantined}")
    return wall, _cpu_s() - c0


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def _cluster_costs(path: Path, n_tasks: int) -> tuple[float, float, float, float]:
    """(start_s, stop_s, per-task overhead s, per-file cost s) on a fresh 2-worker LocalCluster."""
    from distributed import Client, LocalCluster

    from quantnb.parallel._dask import _run_task

    t0 = time.perf_counter()
    ingest_file(path)
    c_file = time.perf_counter() - t0
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=N_WORKERS, threads_per_worker=1, processes=True, dashboard_address=None,
                           memory_limit=0)
    client = Client(cluster, set_as_default=False)
    start_s = time.perf_counter() - t0
    client.submit(_run_task, "bench", int, 0, pure=False).result()  # warm
    t0 = time.perf_counter()
    futures = [client.submit(_run_task, "bench", int, i, pure=False) for i in range(n_tasks)]
    client.gather(futures)
    o_task = (time.perf_counter() - t0) / n_tasks  # with 2 workers: the scheduler's round trip dominates
    t0 = time.perf_counter()
    client.close()
    cluster.close()
    return start_s, time.perf_counter() - t0, o_task, c_file


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--messages", type=int, default=1_000_000,
                    help="messages per replayed capture; 0: plain copies of the sample (93,953 messages)")
    args = ap.parse_args()
    logger.remove()
    print(f"load average before: {_load()} on {os.cpu_count()} CPU(s) (a shared machine: figures may be noisy)")
    with tempfile.TemporaryDirectory(prefix="bench_dask_") as tmp_dir:
        root, n_msgs = _project(Path(tmp_dir), args.files, args.messages)
        size_mb = next((root / "data" / "raw").rglob("*.gz")).stat().st_size / 1e6
        print(f"{args.files} files of {n_msgs} messages ({size_mb:.1f} MB gzip) each; {N_WORKERS} workers")
        walls: dict[str, list[float]] = {"local": [], "dask": []}
        cpus: dict[str, list[float]] = {"local": [], "dask": []}
        for r in range(args.rounds):
            order = ("local", "dask") if r % 2 == 0 else ("dask", "local")
            for executor in order:
                wall, cpu = _run(root, executor, f"{executor}{r}")
                walls[executor].append(wall)
                cpus[executor].append(cpu)
                print(f"round {r + 1}: {executor:<5} {wall:7.2f} s wall, {cpu:7.2f} CPU s (all processes)   "
                      f"load {_load()}")
        ref = sorted((root / "data" / "out_local0").rglob("*.parquet"))
        same = all(p.read_bytes() == (root / "data" / "out_dask0" / p.relative_to(root / "data" / "out_local0"))
                   .read_bytes() for p in ref)
        loc, dsk = statistics.median(walls["local"]), statistics.median(walls["dask"])
        ratios = [d / lo for d, lo in zip(walls["dask"], walls["local"], strict=True)]
        print(f"median wall: local {loc:.2f} s, dask {dsk:.2f} s; dask/local = {dsk / loc:.3f} "
              f"(per round: {', '.join(f'{x:.3f}' for x in ratios)}); goal <= 1.15: "
              f"{'met' if dsk / loc <= 1.15 else 'NOT met'}; Parquet byte-identical: {same}")
        cl, cd = statistics.median(cpus["local"]), statistics.median(cpus["dask"])
        print(f"median CPU (less sensitive to a noisy machine than wall time): local {cl:.2f} s, dask {cd:.2f} s; "
              f"dask/local = {cd / cl:.3f}")
        start_s, stop_s, o_task, c_file = _cluster_costs(next((root / "data" / "raw").rglob("*.gz")), 400)
    print(f"LocalCluster start {start_s:.2f} s, stop {stop_s:.2f} s; scheduler overhead per task "
          f"{o_task * 1e3:.2f} ms; per-file cost c_file {c_file:.2f} s ({n_msgs / c_file:,.0f} msgs/s, one core)")
    t_fixed = start_s + stop_s
    print("\nScaling estimate, T(N) = T_start + ceil(F / (N*k)) * c_file + F * o_task (+ merge on the driver),")
    print(f"k = {N_WORKERS} workers per machine, the files above; the shared filesystem and the driver's merge "
          "are not modelled:")
    print(f"{'files F':>8} {'machines N':>11} {'T(N) s':>10} {'speed-up':>9} {'efficiency':>11}")
    for n_files in (args.files, 365, 365 * 8):
        t1 = t_fixed + math.ceil(n_files / N_WORKERS) * c_file + n_files * o_task
        for n in (1, 2, 4, 8, 16, 32):
            t = t_fixed + math.ceil(n_files / (n * N_WORKERS)) * c_file + n_files * o_task
            print(f"{n_files:>8} {n:>11} {t:>10.1f} {t1 / t:>9.2f} {t1 / t / n:>11.0%}")
    print(f"load average after: {_load()}")


if __name__ == "__main__":
    main()
