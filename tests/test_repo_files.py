"""Files of the repository itself: benchmarks answer --help, recorder outputs are git-ignored."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import PYTHON, REPO


@pytest.mark.parametrize("name", ["bench_live", "bench_record", "bench_labelling", "bench_training", "bench_etl",
                                  "bench_dask", "bench_logging", "bench_runner_overhead"])
def test_every_benchmark_answers_help_without_running(name):
    res = subprocess.run([PYTHON, str(REPO / "benchmarks" / f"{name}.py"), "--help"], capture_output=True,
                         text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith(f"usage: {name}.py") and "Traceback" not in res.stderr


@pytest.mark.parametrize("path", ["data/recorded/raw/bybit/linear/x.data", "data/clickhouse/store/x.bin",
                                  "data/processed/x.parquet", "data/labelled/SELL_0004_BUY_0008_1h/x.parquet"])
def test_recorder_and_stage_outputs_are_git_ignored(path):
    res = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=REPO)
    assert res.returncode == 0, f"{path} is not git-ignored"
