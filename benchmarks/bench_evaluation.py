"""Cost of the evaluation statistics an agent run adds: the uncertainty report and the timing null.

For one week and one month of 1-minute returns (10,080 and 43,200 bars), times
:func:`quantnb.evaluation.sharpe_report` (stationary block bootstrap with ``--n-boot`` resamples,
daily Sharpe, PSR, DSR, track-record length) and :func:`quantnb.evaluation.shift_null`
(999 circular shifts), median of ``--rounds``; the agent's tear sheet (its JSON data, then the PNG);
the training report's paired F1 macro bootstrap against a baseline (1,000 resamples, blocks of 60);
and the PBO of a 30 trials x 8 folds matrix.
The machine is shared: the load average is printed with the figures.

Usage: ``python benchmarks/bench_evaluation.py [--rounds 3] [--n-boot 1000]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import tempfile
import time

import numpy as np


def _median_s(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _evaluation(eq: np.ndarray, ts: list, pos: np.ndarray, r: np.ndarray):
    """An EvaluationResult of the synthetic curve (buy-and-hold: the same curve), with its timing null."""
    from quantnb.agent import EvaluationResult, performance_metrics
    from quantnb.evaluation import sharpe_report, shift_null

    perf = performance_metrics(eq)
    stats = sharpe_report(eq, ts, periods_per_year=525_600, n_boot=100)
    return EvaluationResult(perf, perf, ts, eq, eq, np.r_[pos, 0.0], np.zeros((r.size, 1), np.float32),
                            np.zeros(r.size, np.float32), pos, 525_600.0, stats, stats, r, shift_null(pos, r))


def main() -> None:
    """Print the timings."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n-boot", type=int, default=1000)
    args = ap.parse_args()
    from quantnb.agent._tearsheet import plot_tear_sheet, tear_sheet_data
    from quantnb.evaluation import compare_to_baseline, pbo_cscv, sharpe_report, shift_null

    rng = np.random.default_rng(0)
    print(f"load average {os.getloadavg()[0]:.1f}; n_boot {args.n_boot}; median of {args.rounds}")
    for n in (10_080, 43_200):
        r = rng.normal(0, 1e-3, n)
        eq = 1e4 * np.cumprod(np.r_[1.0, 1.0 + r])
        ts = [dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i) for i in range(n + 1)]
        rep = _median_s(lambda eq=eq, ts=ts: sharpe_report(eq, ts, periods_per_year=525_600, n_trials=8,
                                                          n_boot=args.n_boot), args.rounds)
        pos = rng.choice([-1.0, 0.0, 1.0], n)
        null = _median_s(lambda pos=pos, r=r: shift_null(pos, r, n_shifts=999), args.rounds)
        print(f"{n:>6} bars: sharpe_report {rep:.3f} s, shift_null {null:.3f} s")
        ev = _evaluation(eq, ts, pos, r)
        data = _median_s(lambda ev=ev: tear_sheet_data([ev], ev, [ev], [0], null_seed=0), args.rounds)
        sheet = tear_sheet_data([ev], ev, [ev], [0], null_seed=0)
        with tempfile.TemporaryDirectory() as tmp:
            png = _median_s(lambda s=sheet, d=tmp: plot_tear_sheet(s, f"{d}/sheet.png"), args.rounds)
        print(f"{n:>6} bars: tear sheet data {data:.3f} s, PNG {png:.3f} s, JSON {len(json.dumps(sheet)):,} chars")
        y, a, b = (rng.integers(0, 3, n) for _ in range(3))
        f1 = _median_s(lambda y=y, a=a, b=b: compare_to_baseline(y, a, b, baseline="b", mean_block_len=60),
                       args.rounds)
        print(f"{n:>6} test windows: compare_to_baseline {f1:.3f} s")
    m = rng.normal(size=(30, 8))
    print(f"pbo_cscv 30 trials x 8 folds (70 splits): {_median_s(lambda: pbo_cscv(m), args.rounds) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
