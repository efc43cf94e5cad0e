"""ETL core throughput on one core: quantnb.data against a naive reference, in messages per second.

Inputs, generated from the bundled real samples into a temporary folder:

(a) the Binance USD-M capture ``BTCUSDT_20240808.gz`` replayed to at least 1M messages:
    each replay is shifted in time (whole minutes) and in update ids so that ``pu`` chains
    from one replay to the next; replays after the first start with the REST snapshot
    (shifted), so the book is re-seeded where the replayed diffs expect it.
(b) 1M Bybit-format messages: the ``2026-08-09_BTCUSDT_ob200.data`` snapshot, then its
    413 deltas replayed over and over with ``u`` renumbered contiguously and ``ts`` shifted.

"ETL core" is :func:`quantnb.data.ingest_file` end to end: decompress, parse, validate,
apply to the book, sync, per-minute features and trade bars, the partial-bars frame.
The naive reference does the same job the obvious way: ``json.loads`` per line, a dict
book updated level by level with ``float()`` conversions, ``max``/``min`` over the book for
the touch at every update, and a full sort of both sides at each minute close. Both must
agree on every minute's mid and top-10 depth; the script checks it.

Usage: ``python benchmarks/bench_etl.py [--quick] [--repeat N]`` (``--quick``: 200k messages).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("POLARS_MAX_THREADS", "1")  # one core: before polars is imported

import msgspec  # noqa: E402
import polars as pl  # noqa: E402
from loguru import logger  # noqa: E402

from quantnb.data import ingest_file  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
BINANCE = SAMPLES / "binance_usdm" / "BTCUSDT_20240808.gz"
BYBIT = SAMPLES / "bybit" / "2026-08-09_BTCUSDT_ob200.data"
MINUTE_MS = 60_000


# -- input generation -------------------------------------------------------------------
def make_binance(dst: Path, n_target: int) -> Path:
    """Replay the Binance capture until ``n_target`` lines, chaining ``pu`` across replays."""
    dec, enc = msgspec.json.Decoder(), msgspec.json.Encoder()
    lines = [(int(ns), dec.decode(js)) for ns, js in
             (raw.split(b" ", 1) for raw in gzip.decompress(BINANCE.read_bytes()).splitlines())]
    depth = [m["data"] for _, m in lines if "data" in m and m["data"]["e"] == "depthUpdate"]
    trades = [m["data"]["t"] for _, m in lines if "data" in m and m["data"]["e"] == "trade"]
    times = [m["data"]["E"] for _, m in lines if "data" in m]
    span_ms = (max(times) // MINUTE_MS - min(times) // MINUTE_MS + 1) * MINUTE_MS
    du, dt_id = depth[-1]["u"] - depth[0]["pu"], trades[-1] - trades[0] + 1
    at = next(i for i, (_, m) in enumerate(lines) if "lastUpdateId" in m)
    snapshot, rest = lines[at], lines[:at] + lines[at + 1:]
    out = dst / "BTCUSDT_20240808.gz"
    n = 0
    with gzip.open(out, "wb", compresslevel=1) as fh:
        k = 0
        while n < n_target:
            body = lines if k == 0 else [snapshot, *rest]
            for ns, msg in body:
                msg = json.loads(json.dumps(msg)) if k else msg  # deep copy only when shifting
                if k:
                    _shift(msg, k * span_ms, k * du, k * dt_id)
                fh.write(b"%d " % (ns + k * span_ms * 1_000_000) + enc.encode(msg) + b"\n")
                n += 1
            k += 1
    return out


def _shift(msg: dict, dt_ms: int, du: int, dt_id: int) -> None:
    if "lastUpdateId" in msg:
        msg["lastUpdateId"] += du
        msg["E"] += dt_ms
        msg["T"] += dt_ms
        return
    d = msg["data"]
    for key in ("E", "T"):
        if key in d:
            d[key] += dt_ms
    for key in ("U", "u", "pu"):
        if key in d:
            d[key] += du
    if d["e"] == "trade":
        d["t"] += dt_id


def make_bybit(dst: Path, n_target: int) -> Path:
    """The Bybit snapshot, then its deltas replayed with contiguous ``u`` and shifted ``ts``."""
    dec, enc = msgspec.json.Decoder(), msgspec.json.Encoder()
    msgs = [dec.decode(raw) for raw in BYBIT.read_bytes().splitlines()]
    snap, deltas = msgs[0], msgs[1:]
    span_ms = deltas[-1]["ts"] - snap["ts"] + 100
    out = dst / BYBIT.name
    with open(out, "wb") as fh:
        fh.write(enc.encode(snap) + b"\n")
        u, n, k = snap["data"]["u"], 1, 0
        while n < n_target:
            for d in deltas[: n_target - n]:
                u += 1
                msg = {**d, "ts": d["ts"] + k * span_ms, "cts": d["cts"] + k * span_ms, "data": {**d["data"], "u": u}}
                fh.write(enc.encode(msg) + b"\n")
            n += min(len(deltas), n_target - n)
            k += 1
    return out


# -- naive reference ----------------------------------------------------------------------
class NaiveMinutes:
    """Dict book, touch by max/min at every update, full sort at each minute close."""

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.minute: int | None = None
        self.spreads: list[float] = []
        self.rows: dict[int, tuple[float, float, float, float]] = {}

    def apply(self, bids: list, asks: list) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for p, s in levels:
                p, s = float(p), float(s)
                if s == 0.0:
                    side.pop(p, None)
                else:
                    side[p] = s
        bb, ba = max(self.bids), min(self.asks)
        self.spreads.append(1e4 * (ba - bb) / ((ba + bb) / 2))

    def tick(self, ts_ms: int) -> None:
        minute = ts_ms // MINUTE_MS
        if self.minute is not None and minute > self.minute:
            self.close()
        if self.minute is None or minute > self.minute:
            self.minute, self.spreads = minute, []

    def close(self) -> None:
        if self.minute is None or not self.bids or not self.asks:
            return
        b = sorted(self.bids.items(), reverse=True)
        a = sorted(self.asks.items())
        (pb, qb), (pa, qa) = b[0], a[0]
        mean = sum(self.spreads) / len(self.spreads) if self.spreads else math.nan
        self.rows[self.minute] = ((pb + pa) / 2, sum(s for _, s in b[:10]), sum(s for _, s in a[:10]), mean)
        _ = (pb * qa + pa * qb) / (qb + qa)  # micro-price, computed like the real thing


def naive_bybit(path: Path) -> tuple[int, dict]:
    book, n = NaiveMinutes(), 0
    with open(path) as fh:
        for line in fh:
            msg = json.loads(line)
            n += 1
            book.tick(msg["ts"])
            if msg["type"] == "snapshot":
                book.bids.clear()
                book.asks.clear()
            book.apply(msg["data"]["b"], msg["data"]["a"])
    book.close()
    return n, book.rows


def naive_binance(path: Path) -> tuple[int, dict]:
    book, n = NaiveMinutes(), 0
    buffer: list[dict] = []
    last_id, prev_u, synced = None, None, False
    bars: dict[int, list[float]] = {}
    with gzip.open(path, "rt") as fh:
        for line in fh:
            msg = json.loads(line.split(" ", 1)[1])
            if "lastUpdateId" in msg:
                book.tick(msg["E"])  # the minute before the snapshot closes on the old book
                book.bids = {float(p): float(s) for p, s in msg["bids"]}
                book.asks = {float(p): float(s) for p, s in msg["asks"]}
                last_id, synced, todo, buffer = msg["lastUpdateId"], False, buffer, []
                for d in todo:
                    prev_u, synced = _naive_depth(book, d, last_id, prev_u, synced)
                continue
            n += 1
            d = msg["data"]
            if d["e"] == "depthUpdate":
                book.tick(d["E"])
                if last_id is None:
                    buffer.append(d)
                else:
                    prev_u, synced = _naive_depth(book, d, last_id, prev_u, synced)
            elif d["e"] == "trade":
                price, qty, minute = float(d["p"]), float(d["q"]), d["T"] // MINUTE_MS
                bar = bars.setdefault(minute, [price, price, price, price, 0.0, 0, 0.0])
                bar[1], bar[2], bar[3] = max(bar[1], price), min(bar[2], price), price
                bar[4] += qty
                bar[5] += 1
                bar[6] += 0.0 if d["m"] else qty
            else:
                float(d["b"]), float(d["B"]), float(d["a"]), float(d["A"])  # parsed and checked like ours
    book.close()
    return n, book.rows


def _naive_depth(book: NaiveMinutes, d: dict, last_id: int, prev_u: int | None,
                 synced: bool) -> tuple[int | None, bool]:
    if not synced:
        if d["u"] < last_id:
            return prev_u, False
        if not d["U"] <= last_id <= d["u"]:
            raise RuntimeError("naive reference lost sync")
    elif d["pu"] != prev_u:
        raise RuntimeError("naive reference saw a gap")
    book.apply(d["b"], d["a"])
    return d["u"], True


# -- measurement ---------------------------------------------------------------------------
def _timed(fn, *args):  # noqa: ANN001, ANN202
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _ours(path: Path, repeat: int) -> tuple[int, float, float, dict]:
    best_wall = best_cpu = math.inf
    result = None
    for _ in range(repeat):
        result, wall, cpu = _timed(ingest_file, path)
        best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu)
    assert result is not None
    book = result.bars.filter(pl.col("source").str.ends_with("_book")).drop_nulls(
        ["mid_close", "bid_depth_10", "ask_depth_10", "spread_bps_mean"])  # minutes with a synced close
    rows = {int(ts.timestamp()) // 60: (m, b, a, s) for ts, m, b, a, s in book.select(
        "ts", "mid_close", "bid_depth_10", "ask_depth_10", "spread_bps_mean").iter_rows()}
    return result.n_messages, best_wall, best_cpu, rows


def _peak_rss_mb() -> float:
    """High-water RSS of this process (Linux VmHWM: per address space, unlike ru_maxrss across fork)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _ingest_peak_rss_mb(path: str) -> tuple[float, float]:
    logger.remove()
    before = _peak_rss_mb()
    ingest_file(path)
    return before, _peak_rss_mb()


def _child_peak_rss_mb(path: Path) -> tuple[float, float]:
    """Peak RSS of a fresh process that imports quantnb and ingests ``path`` (flat in file size)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_ingest_peak_rss_mb, str(path)).result()


def _agree(ours: dict, naive: dict) -> str:
    if not ours.keys() <= naive.keys() or len(ours) < 0.9 * len(naive):
        return f"NO ({len(ours)} vs {len(naive)} minutes)"
    worst = max((abs(x - y) / max(abs(y), 1e-12) for k in ours for x, y in zip(ours[k], naive[k], strict=True)),
                default=0.0)
    return f"yes ({len(ours)} minutes, max rel. diff {worst:.1e})" if worst < 1e-9 else f"NO (rel. diff {worst:.1e})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200k messages per input instead of 1M")
    parser.add_argument("--repeat", type=int, default=2, help="runs of the quantnb core (best is reported)")
    args = parser.parse_args()
    n_target = 200_000 if args.quick else 1_000_000
    logger.remove()  # a benchmark: no log sinks, the figures are printed
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    print(f"python {sys.version.split()[0]}, polars {pl.__version__}, msgspec {msgspec.__version__}, one core")
    print("msg/s = messages / CPU seconds of this process (wall-clock rate in brackets: the machine is shared);")
    print("peak RSS = of a fresh process ingesting the file / after its imports (compare --quick with a full run)")
    print(f"{'input':<32}{'messages':>10}{'quantnb msg/s':>24}{'naive msg/s':>22}{'ratio':>7}{'peak RSS':>12}  agree")
    with tempfile.TemporaryDirectory(prefix="bench-etl-") as tmp:
        for label, make, naive in (("(a) Binance capture, replayed", make_binance, naive_binance),
                                   ("(b) Bybit ob200, replayed", make_bybit, naive_bybit)):
            path = make(Path(tmp), n_target)
            n, wall, cpu, ours_rows = _ours(path, args.repeat)
            rss_base, rss_mb = _child_peak_rss_mb(path)
            (n_naive, naive_rows), naive_wall, naive_cpu = _timed(naive, path)
            ours = f"{n / cpu:,.0f} ({n / wall:,.0f})"
            theirs = f"{n_naive / naive_cpu:,.0f} ({n_naive / naive_wall:,.0f})"
            print(f"{label:<32}{n:>10,}{ours:>24}{theirs:>22}{(n / cpu) / (n_naive / naive_cpu):>7.1f}"
                  f"{rss_mb:>6.0f}/{rss_base:.0f}MB  {_agree(ours_rows, naive_rows)}", flush=True)
            path.unlink()

if __name__ == "__main__":
    main()
