"""Download benchmark: files per second at ``max_concurrency`` 8 against a sequential download.

A loopback archive server (:class:`quantnb.testing.ArchiveServer`, its own process) serves
the bundled samples' Binance USD-M daily 1-minute kline zips (~42 kB each, with their
``.CHECKSUM`` files) under several symbols, and waits ``latency_ms`` (default 20 ms) before
answering every request, like a distant archive. The download stage (this process) fetches
them with ``max_concurrency`` 1 and 8, each into a fresh project; every file costs two
requests (checksum, then data) and a SHA-256. Reported per setting:

- files/s (downloaded files / wall time of the transfers) and the speed-up of 8 over 1;
  goal >= 5x;
- resident memory of this process: peak over the run minus the level before it, for
  ``n_files`` and for 4x as many files (flat: no growth with the number of files).

Run: .venv/bin/python benchmarks/bench_download.py [--files N] [--latency-ms MS]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import threading
from pathlib import Path

import psutil

GOAL = 5.0
ROOT = Path(__file__).resolve().parents[1]
DAYS = 30  # 2022-01-02 to 2022-01-31: daily files (the whole month would be one monthly file)


def _symbols(n_files: int) -> list[str]:
    return [f"SYM{i:03d}USDT" for i in range((n_files + DAYS - 1) // DAYS)]


def _serve(port_q: mp.Queue, stop: mp.Event, n_files: int, latency_s: float) -> None:  # type: ignore[valid-type]
    from quantnb.testing.archive_server import ArchiveServer, sample_archive

    files = sample_archive(ROOT / "data" / "samples")
    srv = ArchiveServer(latency_s=latency_s)
    for path, data in files.items():
        if "/daily/klines/BTCUSDT/" in path and not path.endswith(".CHECKSUM"):
            for sym in _symbols(n_files):
                srv.add_file(path.replace("BTCUSDT", sym), data)
    srv.start()
    port_q.put(srv.url)
    stop.wait()
    srv.stop()


def _run(url: str, symbols: list[str], concurrency: int) -> tuple[int, float, float]:
    """Download every file once into a fresh project; return (files, seconds, peak RSS growth in MB)."""
    from quantnb.stages.download import DownloadParams, run_download

    proc = psutil.Process()
    with tempfile.TemporaryDirectory(prefix="bench-download-") as tmp:
        (Path(tmp) / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
        base = proc.memory_info().rss
        peak = [base]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.02):
                peak[0] = max(peak[0], proc.memory_info().rss)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        res = run_download(DownloadParams(symbols=symbols, start="2022-01-02", end="2022-01-31", base_url=url,
                                          max_concurrency=concurrency, project_dir=tmp, console_level="ERROR"))
        done.set()
        sampler.join()
    n = int((res.files["status"] == "downloaded").sum())
    if n != res.files.height:
        raise RuntimeError(f"{res.files.height - n} file(s) not downloaded: {res.files['status'].value_counts()}")
    return n, res.elapsed_s, (peak[0] - base) / 1e6


def main() -> None:
    """Print files/s at max_concurrency 1 and 8, the speed-up, and memory growth for n and 4n files."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=60, help="files per run (30 days per symbol; default 60)")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="server latency per request, ms (default 20)")
    args = ap.parse_args()
    n_big = 4 * args.files
    ctx = mp.get_context("spawn")
    port_q, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=_serve, args=(port_q, stop, n_big, args.latency_ms / 1000), daemon=True)
    server.start()
    url = port_q.get(timeout=120)
    try:
        syms = _symbols(args.files)
        _run(url, syms[:1], 8)  # warm-up: imports, first connections
        n1, t1, m1 = _run(url, syms, 1)
        n8, t8, m8 = _run(url, syms, 8)
        nb, tb, mb = _run(url, _symbols(n_big), 8)
    finally:
        stop.set()
        server.join(10)
    r1, r8 = n1 / t1, n8 / t8
    print(f"latency {args.latency_ms:.0f} ms per request, 2 requests + SHA-256 per file (~42 kB zips)")
    print(f"max_concurrency 1: {n1} files in {t1:.2f} s = {r1:.1f} files/s; peak RSS growth {m1:.1f} MB")
    print(f"max_concurrency 8: {n8} files in {t8:.2f} s = {r8:.1f} files/s; peak RSS growth {m8:.1f} MB")
    print(f"max_concurrency 8: {nb} files in {tb:.2f} s = {nb / tb:.1f} files/s; peak RSS growth {mb:.1f} MB "
          f"(4x the files)")
    print(f"speed-up 8 vs 1: {r8 / r1:.2f}x (goal >= {GOAL:.0f}x: {'met' if r8 / r1 >= GOAL else 'NOT met'})")


if __name__ == "__main__":
    main()
