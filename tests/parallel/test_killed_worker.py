"""A worker process killed mid-file (SIGKILL, the out-of-memory killer) in the ETL or labelling pool.

The stage's local pool is :func:`quantnb.parallel.open_executor`'s: the kill is an ``ExecutorError``
(a ``QuantnbError``) naming the file the worker was processing and the resume command; nothing is
quarantined, and a resume processes the files. The worker functions are swapped for ones that
SIGKILL their own process on a file named ``*_die_*`` (tests/parallel/_die.py), so the kill lands
on a known file without racing anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from quantnb.errors import QuantnbError
from quantnb.parallel import ExecutorError
from quantnb.stages import etl, labelling
from tests.conftest import SAMPLES
from tests.parallel import _die

CSV = SAMPLES / "ohlcv" / "BTC-PERP_20211231_20220201_1m.csv"


def _checkpoint(root: Path, run_id: str) -> dict:
    return json.loads((root / "logs" / "checkpoints" / f"{run_id}_completed.json").read_text())


def _failed_run(root: Path) -> tuple[str, dict]:
    (run_dir,) = (root / "runs").iterdir()
    return run_dir.name, json.loads((run_dir / "run.json").read_text())


def test_etl_worker_killed_mid_file_is_an_executor_error_naming_it_then_resume_finishes(project, monkeypatch):
    raw = project / "data" / "raw"
    raw.mkdir(parents=True)
    lines = CSV.read_text().splitlines(keepends=True)
    for name, start in (("BTC-PERP_a_1m.csv", 1), ("BTC-PERP_die_1m.csv", 1441), ("BTC-PERP_c_1m.csv", 2881)):
        (raw / name).write_text(lines[0] + "".join(lines[start:start + 120]))
    monkeypatch.setattr(etl, "_ingest_to_shard", _die.ingest_or_die)
    params = {"input_globs": ["data/raw/*.csv"], "output_dir": "data/out", "project_dir": str(project),
              "console_level": None}
    with pytest.raises(ExecutorError) as err:
        etl.run_etl(etl.EtlParams(n_workers=2, **params))
    assert isinstance(err.value, QuantnbError)
    run_id, record = _failed_run(project)
    text = str(err.value)
    assert "data/raw/BTC-PERP_die_1m.csv (its worker process" in text and "SIGKILL" in text
    assert f"quantnb run etl --resume {run_id}" in text and "Nothing was quarantined" in text
    assert record["status"] == "failed" and "BTC-PERP_die_1m.csv" in record["error"]
    ckpt = _checkpoint(project, run_id)
    assert ckpt["failed"] == {} and "data/raw/BTC-PERP_die_1m.csv" not in ckpt["completed"]
    monkeypatch.undo()
    done = etl.run_etl(etl.EtlParams(n_workers=1, resume=True, run_id=run_id, **params))
    assert done.status == "completed" and done.quarantined == {}
    assert sorted(_checkpoint(project, run_id)["completed"]) == sorted(f"data/raw/{p.name}" for p in raw.iterdir())


def test_labelling_worker_killed_mid_file_is_an_executor_error_naming_it(project, monkeypatch):
    folder = project / "data" / "processed" / "BTC-PERP"
    folder.mkdir(parents=True)
    bars = (pl.read_csv(CSV, n_rows=360)
            .with_columns(pl.col("timestamp").str.to_datetime(time_zone="UTC").dt.cast_time_unit("us").alias("ts"))
            .drop("timestamp").with_columns(pl.lit(False).alias("gap_before")))
    for i, name in enumerate(("2022-01-01.parquet", "2022-01-02_die_.parquet", "2022-01-03.parquet")):
        bars.slice(120 * i, 120).write_parquet(folder / name)
    monkeypatch.setattr(labelling, "_label_one", _die.label_or_die)
    with pytest.raises(ExecutorError) as err:
        labelling.run_labelling(labelling.LabellingParams(
            input_glob="data/processed/BTC-PERP/*.parquet", lookahead_min=30, n_workers=2,
            project_dir=str(project), console_level=None))
    run_id, record = _failed_run(project)
    assert "data/processed/BTC-PERP/2022-01-02_die_.parquet (its worker process" in str(err.value)
    assert f"quantnb run labelling --resume {run_id}" in str(err.value)
    assert record["status"] == "failed" and _checkpoint(project, run_id)["failed"] == {}
