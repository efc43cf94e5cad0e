"""ETL and labelling inputs: identity by path, instruments, odd paths and globs, non-files, empty files, pool crash."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import psutil
import pytest

from quantnb.errors import ConfigError
from quantnb.stages.etl import EtlParams, run_etl
from quantnb.stages.labelling import LabellingParams, run_labelling
from quantnb.testing.builders import write_ohlcv_csv
from tests.conftest import QUANTNB, SAMPLES, run_cli
from tests.data.test_spot_and_quality import spot_capture

BYBIT_XRP = SAMPLES / "bybit" / "2024-12-01_XRPUSDT_ob500.data.zip"
BYBIT_BTC = SAMPLES / "bybit" / "2026-08-09_BTCUSDT_ob200.data"
BINANCE = SAMPLES / "binance_usdm" / "BTCUSDT_20240808.gz"
SAFE_RUN_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


def _etl(project: Path, globs: list[str], **kw) -> object:
    params = EtlParams(project_dir=str(project), input_globs=globs, n_workers=kw.pop("n_workers", 1),
                       output_dir=kw.pop("output_dir", "data/out"), console_level=None, **kw)
    return run_etl(params)


def _parquets(project: Path, out: str = "data/out") -> list[str]:
    return sorted(str(p.relative_to(project / out)) for p in (project / out).rglob("*.parquet"))


def _record(project: Path, run_id: str) -> dict:
    return json.loads((project / "runs" / run_id / "run.json").read_text())


def _checkpoint(project: Path, run_id: str) -> dict:
    return json.loads((project / "logs" / "checkpoints" / f"{run_id}_completed.json").read_text())


def test_same_file_name_in_two_folders_is_two_inputs_and_two_instruments(project):
    """Bybit's linear and spot archives of one symbol and day have the same file name."""
    for market in ("linear", "spot"):
        dest = project / "data" / "raw" / "orderbook" / market / "XRPUSDT"
        dest.mkdir(parents=True)
        shutil.copy(BYBIT_XRP, dest / BYBIT_XRP.name)
    res = _etl(project, ["data/raw/**/*.zip"])
    assert res.status == "completed", res.quarantined
    assert _parquets(project) == ["bybit/linear/XRPUSDT/2024-12-01.parquet", "bybit/spot/XRPUSDT/2024-12-01.parquet"]
    ckpt = _checkpoint(project, res.run_id)
    assert sorted(ckpt["completed"]) == [f"data/raw/orderbook/{m}/XRPUSDT/{BYBIT_XRP.name}" for m in ("linear", "spot")]
    shards = sorted(p.name for p in (project / "runs" / res.run_id / "parts").glob("*.parquet"))
    assert len(shards) == 2 and all(s.startswith(BYBIT_XRP.name + "-") for s in shards)
    for market in ("linear", "spot"):
        bars = pl.read_parquet(project / "data" / "out" / "bybit" / market / "XRPUSDT" / "2024-12-01.parquet")
        assert bars.select("venue", "market", "symbol").unique().rows() == [("bybit", market, "XRPUSDT")]
    assert set(res.outputs["market"]) == {"linear", "spot"}
    from quantnb.stages.agent import load_bars  # the agent never trains on two instruments at once

    with pytest.raises(ConfigError, match="2 instruments"):
        load_bars(project, "data/out/**/*.parquet")
    assert load_bars(project, "data/out/bybit/spot/**/*.parquet")["market"].unique().to_list() == ["spot"]


def test_same_name_same_instrument_in_two_folders_keeps_both_inputs(project):
    """Two copies of one Binance capture in two folders (no market folder): two items, two shards, one instrument."""
    for sub in ("a", "b"):
        (project / "data" / "raw" / sub).mkdir(parents=True)
        shutil.copy(BINANCE, project / "data" / "raw" / sub / BINANCE.name)
    res = _etl(project, ["data/raw/*/*.gz"])
    assert sorted(_checkpoint(project, res.run_id)["completed"]) == [f"data/raw/{s}/{BINANCE.name}" for s in "ab"]
    assert len(list((project / "runs" / res.run_id / "parts").glob("*.parquet"))) == 2
    assert _parquets(project) == ["binance/usdm/BTCUSDT/2024-08-08.parquet", "binance/usdm/BTCUSDT/2024-08-09.parquet"]
    assert set(res.quality) == {f"data/raw/{s}/{BINANCE.name}" for s in "ab"}


def test_instrument_from_parameters_when_the_folders_name_no_market(project):
    raw = project / "data" / "raw"
    raw.mkdir(parents=True)
    shutil.copy(BYBIT_BTC, raw / BYBIT_BTC.name)
    spot_capture(raw / "BTCUSDT_20240808.gz")  # a Binance spot capture: its events say spot
    write_ohlcv_csv(raw, n_minutes=30)
    res = _etl(project, ["data/raw/*"], bybit_market="inverse", ohlcv_venue="ftx")
    assert res.status == "completed", res.quarantined
    assert _parquets(project) == ["binance/spot/BTCUSDT/2024-08-08.parquet", "binance/spot/BTCUSDT/2024-08-09.parquet",
                                  "bybit/inverse/BTCUSDT/2026-08-09.parquet", "ftx/perp/BTC-PERP/2024-01-02.parquet"]
    assert _record(project, res.run_id)["results"]["instruments"] == [
        "binance/spot/BTCUSDT", "bybit/inverse/BTCUSDT", "ftx/perp/BTC-PERP"]
    with pytest.raises(ConfigError, match="bybit_market"):
        EtlParams.parse({"bybit_market": "../x"})


def test_recursive_absolute_and_odd_paths_then_resume_then_label_an_absolute_glob(project, tmp_path):
    odd = project / "data" / "raw dir" / "données ü" / "deep [x]*"
    odd.mkdir(parents=True)
    built = write_ohlcv_csv(odd, start="2024-01-01 22:00", n_minutes=240, seed=3).path
    outside = tmp_path / "outside [1]" / "x y"
    outside.mkdir(parents=True)
    shutil.copy(BYBIT_BTC, outside / BYBIT_BTC.name)
    globs = ["data/raw dir/**/*.csv", str(outside / "*.data")]
    res = _etl(project, globs, output_dir="data/out put")
    assert res.status == "completed", res.quarantined
    assert SAFE_RUN_ID.match(res.run_id), res.run_id
    completed = _checkpoint(project, res.run_id)["completed"]
    assert sorted(completed) == sorted([built.relative_to(project).as_posix(), (outside / BYBIT_BTC.name).as_posix()])
    assert _parquets(project, "data/out put") == ["bybit/linear/BTCUSDT/2026-08-09.parquet",
                                                  "unknown/perp/BTC-PERP/2024-01-01.parquet",
                                                  "unknown/perp/BTC-PERP/2024-01-02.parquet"]
    again = _etl(project, globs, output_dir="data/out put", resume=True, run_id=res.run_id)
    assert again.status == "completed" and again.run_id == res.run_id
    # labelling: an absolute pattern with '**' (Path.glob refuses absolute patterns)
    lab = run_labelling(LabellingParams(
        project_dir=str(project), input_glob=str(project / "data" / "out put" / "unknown" / "**" / "*.parquet"),
        lookahead_min=30, threshold_short_frac=-0.002, threshold_long_frac=0.002, n_workers=1, console_level=None))
    assert lab.status == "completed", lab.quarantined
    assert sorted(lab.distribution["file"]) == ["2024-01-01.parquet", "2024-01-02.parquet"]
    assert SAFE_RUN_ID.match(lab.run_id)
    # the agent's and the live replay's bars globs: absolute with '**', under a folder holding '[1]'
    from quantnb.stages.agent import load_bars
    from quantnb.stages.live import _replay_files

    odd_out = tmp_path / "outside [1]" / "bars"
    shutil.copytree(project / "data" / "out put" / "unknown", odd_out)
    pattern = str(odd_out / "**" / "*.parquet")
    assert load_bars(project, pattern).height == 240
    from quantnb.data import read_bars

    assert read_bars(_replay_files(project, pattern)).height == 240


def test_labelling_refuses_a_glob_spanning_two_instruments(project):
    out = project / "data" / "processed"
    for market in ("linear", "spot"):
        (out / "bybit" / market / "BTCUSDT").mkdir(parents=True)
        pl.DataFrame({"ts": [0]}).write_parquet(out / "bybit" / market / "BTCUSDT" / "2024-01-01.parquet")
    with pytest.raises(ConfigError, match="one instrument per run"):
        run_labelling(LabellingParams(project_dir=str(project), input_glob="data/processed/**/*.parquet",
                                      n_workers=1, console_level=None))


def test_run_id_suffix_is_safe_for_any_pattern():
    params = EtlParams(input_globs=["data/**/*.gz", "/abs/pa th/[ab]/*.csv", "x/données/*"])
    suffix = params.run_suffix()
    assert SAFE_RUN_ID.match(suffix) and "**" not in suffix
    from quantnb.runs._run import make_run_id, utc_now

    assert SAFE_RUN_ID.match(make_run_id("etl", "a/**/b c[1]", utc_now()))


def test_whatever_is_not_a_readable_regular_file_is_quarantined_with_an_error(project):
    raw = project / "data" / "raw"
    raw.mkdir(parents=True)
    shutil.copy(BYBIT_BTC, raw / BYBIT_BTC.name)
    (raw / "2026-08-10_BTCUSDT_ob200.data").mkdir()  # a directory with a data file's name
    (raw / "2026-08-11_BTCUSDT_ob200.data").symlink_to(raw / "gone.data")  # broken symbolic link
    os.mkfifo(raw / "2026-08-12_BTCUSDT_ob200.data")  # a FIFO: reading it would block forever
    res = _etl(project, ["data/raw/*.data", "/dev/null"])
    expected = {
        "data/raw/2026-08-10_BTCUSDT_ob200.data": "a directory",
        "data/raw/2026-08-11_BTCUSDT_ob200.data": "broken symbolic link",
        "data/raw/2026-08-12_BTCUSDT_ob200.data": "FIFO",
        "/dev/null": "character device",
    }
    assert res.status == "completed_with_errors"
    assert set(res.quarantined) == set(expected)
    for item, what in expected.items():
        assert what in res.quarantined[item] and item.split("/")[-1] in res.quarantined[item], res.quarantined[item]
        assert "; " in res.quarantined[item]  # ...; <what to do>
    record = _record(project, res.run_id)
    assert set(record["failed_items"]) == set(expected)
    log = (project / "logs" / "etl" / f"{res.run_id}.log").read_text()
    assert log.count("| ERROR    |") >= len(expected)
    assert _parquets(project) == ["bybit/linear/BTCUSDT/2026-08-09.parquet"]


def test_a_recursive_pattern_walks_folders_and_a_plain_one_reports_them(project):
    raw = project / "data" / "raw"
    (raw / "a" / "b").mkdir(parents=True)
    shutil.copy(BYBIT_BTC, raw / "a" / "b" / BYBIT_BTC.name)
    shutil.copy(BYBIT_XRP, raw / BYBIT_XRP.name)
    res = _etl(project, ["data/raw/**/*"])
    assert res.status == "completed" and res.quarantined == {}
    assert sorted(_checkpoint(project, res.run_id)["completed"]) == [
        f"data/raw/{BYBIT_XRP.name}", f"data/raw/a/b/{BYBIT_BTC.name}"]
    plain = _etl(project, ["data/raw/*"], output_dir="data/out2")
    assert list(plain.quarantined) == ["data/raw/a"] and "a directory" in plain.quarantined["data/raw/a"]


def test_unreadable_file_is_quarantined(project):
    if os.geteuid() == 0:
        pytest.skip("runs as root: chmod 000 does not stop root from reading; the other non-file kinds are tested")
    raw = project / "data" / "raw"
    raw.mkdir(parents=True)
    shutil.copy(BYBIT_BTC, raw / BYBIT_BTC.name)
    (raw / BYBIT_BTC.name).chmod(0)
    res = _etl(project, ["data/raw/*"])
    assert "not readable" in res.quarantined[f"data/raw/{BYBIT_BTC.name}"]


def test_file_without_data_rows_is_reported_in_run_json_and_quality(project):
    raw = project / "data" / "raw"
    raw.mkdir(parents=True)
    built = write_ohlcv_csv(raw, n_minutes=30).path
    empty = raw / "ETH-PERP_20240101_20240102_1m.csv"
    empty.write_text(built.read_text().splitlines()[0] + "\n")
    res = _etl(project, ["data/raw/*.csv"])
    item = "data/raw/ETH-PERP_20240101_20240102_1m.csv"
    assert res.empty_inputs == [item]
    assert res.quality[item]["no_data_rows"] is True
    assert _record(project, res.run_id)["results"]["empty_inputs"] == [item]
    log = (project / "logs" / "etl" / f"{res.run_id}.log").read_text()
    assert any("WARNING" in line and "no data rows" in line and empty.name in line for line in log.splitlines())


def test_empty_gz_capture_is_an_error_not_a_silent_success(project):
    raw = project / "data" / "raw"
    raw.mkdir(parents=True)
    (raw / "BTCUSDT_20240809.gz").write_bytes(b"")  # a failed download
    with gzip.open(raw / "BTCUSDT_20240810.gz", "wb"):
        pass  # a valid gzip stream holding nothing
    res = _etl(project, ["data/raw/*.gz"])
    assert res.status == "completed_with_errors"
    for name in ("BTCUSDT_20240809.gz", "BTCUSDT_20240810.gz"):
        assert "holds no messages" in res.quarantined[f"data/raw/{name}"]


def test_resume_of_a_checkpoint_that_names_inputs_by_file_name_is_refused(project):
    raw = project / "data" / "raw"
    raw.mkdir(parents=True)
    shutil.copy(BYBIT_BTC, raw / BYBIT_BTC.name)
    res = _etl(project, ["data/raw/*"])
    ckpt_path = project / "logs" / "checkpoints" / f"{res.run_id}_completed.json"
    old = _checkpoint(project, res.run_id)
    old.pop("extra")  # what an older quantnb wrote
    ckpt_path.write_text(json.dumps(old))
    with pytest.raises(ConfigError, match="older quantnb"):
        _etl(project, ["data/raw/*"], resume=True, run_id=res.run_id)


def _spawned_workers(pid: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for c in children:
        try:
            if any("spawn_main" in part for part in c.cmdline()):
                out.append(c)
        except psutil.Error:
            pass
    return out


@pytest.mark.slow
def test_a_crashed_worker_pool_fails_the_run_and_resume_processes_the_files(project):
    raw = project / "data" / "raw"
    raw.mkdir(parents=True)
    for i in range(4):
        shutil.copy(BINANCE, raw / f"BTCUSDT_2024080{i}.gz")
    proc = subprocess.Popen([QUANTNB, "run", "etl", "-p", "input_globs", '["data/raw/*"]', "-p", "n_workers", "2"],
                            cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_id = proc.stdout.readline().split(" run ")[1].split()[0]
    deadline = time.monotonic() + 180
    killed = False
    log = project / "logs" / "etl" / f"{run_id}.log"
    while time.monotonic() < deadline and proc.poll() is None and not killed:
        workers = _spawned_workers(proc.pid)
        if workers and log.exists() and "reading as" in log.read_text():  # a worker is reading a file
            workers[0].send_signal(signal.SIGKILL)  # what the out-of-memory killer does
            killed = True
        time.sleep(0.01)
    out, _ = proc.communicate(timeout=300)
    assert killed, "no worker process was seen"
    assert proc.returncode != 0, out
    record = _record(project, run_id)
    assert record["status"] == "failed", record
    assert "worker pool crashed" in record["error"] and "--resume" in record["error"]
    ckpt = _checkpoint(project, run_id)
    assert ckpt["failed"] == {} and len(ckpt["completed"]) < 4
    final = run_cli("run", "etl", "--resume", run_id, cwd=project)
    assert final.returncode == 0, final.stdout + final.stderr
    ckpt = _checkpoint(project, run_id)
    assert sorted(ckpt["completed"]) == [f"data/raw/BTCUSDT_2024080{i}.gz" for i in range(4)]
    assert _record(project, run_id)["status"] == "completed"
