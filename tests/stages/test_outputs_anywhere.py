"""Output folders outside the project: ETL, labelling, record and the Dask ETL write where the user says."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest

from quantnb.errors import ConfigError
from quantnb.stages.etl import EtlParams, run_etl
from quantnb.stages.labelling import LabellingParams, run_labelling
from tests.conftest import SAMPLES, make_project, run_cli

OB200 = SAMPLES / "bybit" / "2026-08-09_BTCUSDT_ob200.data"


@pytest.fixture
def two_places(tmp_path: Path) -> tuple[Path, Path]:
    """A project, and a data volume beside it (never inside it)."""
    return make_project(tmp_path / "proj"), tmp_path / "volume"


def _files(folder: Path, pattern: str = "*.parquet") -> list[Path]:
    return sorted(folder.rglob(pattern))


def _record(root: Path, run_id: str) -> dict:
    return json.loads((root / "runs" / run_id / "run.json").read_text())


@pytest.mark.parametrize("executor", ["local", pytest.param("dask", marks=pytest.mark.slow)])
def test_etl_writes_into_an_absolute_folder_outside_the_project(two_places, executor):
    root, volume = two_places
    out = volume / "processed"
    res = run_etl(EtlParams(input_globs=[str(OB200)], output_dir=str(out), n_workers=1 if executor == "local" else 2,
                            executor=executor, project_dir=str(root), console_level=None))
    assert res.status == "completed" and not res.quarantined
    written = _files(out)
    assert [p.relative_to(out).as_posix() for p in written] == ["bybit/linear/BTCUSDT/2026-08-09.parquet"]
    assert pl.read_parquet(written[0]).height > 0
    assert not (root / "data" / "processed").exists() and not _files(root / "data")
    assert _record(root, res.run_id)["outputs"]["parquet_dir"] == str(out)


def test_labelling_output_dir_is_a_parameter_recorded_in_run_json(two_places):
    root, volume = two_places
    bars = volume / "bars"
    run_etl(EtlParams(input_globs=[str(SAMPLES / "ohlcv" / "*.csv")], output_dir=str(bars), n_workers=1,
                      project_dir=str(root), console_level=None))
    out = volume / "labelled" / "mine"
    res = run_labelling(LabellingParams(input_glob=str(bars / "unknown/perp/BTC-PERP/*.parquet"), output_dir=str(out),
                                        n_workers=1, project_dir=str(root), console_level=None))
    assert res.status == "completed" and res.output_dir == out
    assert len(_files(out)) >= 28 and (out / "labelling_config.json").exists()
    assert _record(root, res.run_id)["outputs"]["labelled_dir"] == str(out)
    assert not (root / "data" / "labelled").exists()


def test_record_writes_raw_and_parquet_into_an_absolute_folder_outside_the_project(two_places):
    from quantnb.stages.record import RecordParams, run_record
    from quantnb.testing.bybit_ws_server import BybitStreamServer

    root, volume = two_places
    out = volume / "recorded"
    with BybitStreamServer() as srv:
        res = run_record(RecordParams(venue="bybit", market="linear", symbols=["BTCUSDT"], depth=200,
                                      channels=["book"], ws_url=srv.url("linear"), sinks=["raw", "parquet"],
                                      output_dir=str(out), max_messages=414, flush_every_s=0.3,
                                      progress_every_s=0.3, project_dir=str(root), console_level=None))
    assert res.status == "completed"
    assert res.raw_dir.is_relative_to(out) and res.parquet_dir.is_relative_to(out)
    assert (res.raw_dir / "2026-08-09_BTCUSDT_ob200.data").read_bytes() == OB200.read_bytes()
    assert _files(out / "parquet") and not (root / "data" / "recorded").exists()


def test_relative_output_folders_resolve_from_the_project_even_from_notebooks_cwd(two_places, monkeypatch):
    root, _ = two_places
    monkeypatch.chdir(root / "notebooks")  # JupyterLab's kernel cwd
    monkeypatch.delenv("QUANTNB_HOME", raising=False)
    res = run_etl(EtlParams(input_globs=[str(OB200)], output_dir="data/bars", n_workers=1, console_level=None))
    assert _files(root / "data" / "bars") and not (root / "notebooks" / "data").exists()
    assert res.status == "completed"


def test_a_dotdot_the_user_wrote_is_taken_and_spine_folders_and_ids_are_refused(two_places):
    root, volume = two_places
    p = EtlParams.parse({"output_dir": "../volume/processed", "project_dir": str(root)})
    assert p.output_dir == "../volume/processed"
    for bad in ("runs", "runs/x", "logs/etl", str(root), ""):
        with pytest.raises(ConfigError, match="output_dir="):
            EtlParams.parse({"output_dir": bad, "project_dir": str(root)})
    with pytest.raises(ConfigError, match="output_root='logs'"):
        LabellingParams.parse({"output_root": "logs", "project_dir": str(root)})
    from quantnb.stages.live import LiveParams

    with pytest.raises(ConfigError, match="train_id='../agent_x'.*not a plain name"):
        LiveParams.parse({"train_id": "../agent_x", "project_dir": str(root)})


def test_a_symbolic_link_in_runs_that_points_elsewhere_is_not_written_through(two_places):
    root, volume = two_places
    first = run_etl(EtlParams(input_globs=[str(OB200)], output_dir=str(volume / "a"), n_workers=1,
                              project_dir=str(root), console_level=None))
    elsewhere = volume / "moved_run"
    (root / "runs" / first.run_id).rename(elsewhere)
    os.symlink(elsewhere, root / "runs" / first.run_id)
    before = {p: p.stat().st_mtime_ns for p in elsewhere.rglob("*")}
    with pytest.raises(ConfigError, match="symbolic link"):
        run_etl(EtlParams(input_globs=[str(OB200)], output_dir=str(volume / "a"), n_workers=1, resume=True,
                          run_id=first.run_id, project_dir=str(root), console_level=None))
    assert {p: p.stat().st_mtime_ns for p in elsewhere.rglob("*")} == before
    record = json.loads((elsewhere / "run.json").read_text())  # a dead "running" run: listing it writes nothing
    (elsewhere / "run.json").write_text(json.dumps({**record, "status": "running", "pid": 2**22 + 12345}))
    before = {p: p.stat().st_mtime_ns for p in elsewhere.rglob("*")}
    res = run_cli("run", "etl", "--resume", first.run_id, cwd=root)
    assert res.returncode == 2 and "symbolic link" in res.stderr, res.stderr
    assert {p: p.stat().st_mtime_ns for p in elsewhere.rglob("*")} == before
