"""The download stage against the loopback archive server: integrity, faults, resume, then the ETL."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl

from quantnb.data import ingest_file
from quantnb.testing import ArchiveServer
from quantnb.testing._faults import Fault
from tests.conftest import SAMPLES

KLINES = "data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2022-01-{:02d}.zip"
TRADES = "data/futures/um/daily/trades/BTCUSDT/BTCUSDT-trades-2024-08-08.zip"
BAR_COLUMNS = ["ts", "open", "high", "low", "close", "volume", "n_trades", "buy_volume"]


def _download(project: Path, srv: ArchiveServer, **kw):
    from quantnb.stages.download import DownloadParams, run_download

    values = {"start": "2022-01-01", "end": "2022-01-03", "base_url": srv.url, "project_dir": str(project),
              "console_level": "WARNING", **kw}
    return run_download(DownloadParams.parse(values))


def _etl(project: Path, globs: list[str], out: str = "data/processed"):
    from quantnb.stages.etl import EtlParams, run_etl

    return run_etl(EtlParams(input_globs=globs, output_dir=out, n_workers=1, project_dir=str(project),
                             console_level="WARNING"))


def _bars(project: Path, out: str = "data/processed") -> pl.DataFrame:
    files = sorted((project / out).glob("*/*/*/*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]).sort("venue", "market", "symbol", "ts")


def _record(project: Path, run_id: str) -> dict:
    return json.loads((project / "runs" / run_id / "run.json").read_text())


def test_download_then_etl_gives_the_bars_of_the_same_data_read_directly(project, archive, archive_files):
    res = _download(project, archive)
    assert res.status == "completed" and res.files["status"].to_list() == ["downloaded"] * 3
    raw = project / "data" / "raw"
    for day in (1, 2, 3):  # byte for byte what the archive holds
        assert (raw / KLINES.format(day)).read_bytes() == archive_files[KLINES.format(day)]
    _download(project, archive, data_type="trades", start="2024-08-08", end="2024-08-08")
    etl = _etl(project, ["data/raw/**/*.zip"])
    assert etl.status == "completed" and not etl.quarantined
    bars = _bars(project)
    assert set(bars["venue"]) == {"binance"} and set(bars["market"]) == {"usdm"}  # from the archive's folders
    # the klines were built from the bundled 1-minute OHLCV sample: the same prices, minute for minute
    ohlcv = ingest_file(SAMPLES / "ohlcv" / "BTC-PERP_20211231_20220201_1m.csv").bars
    want = ohlcv.filter(pl.col("ts").dt.date().is_between(dt.date(2022, 1, 1), dt.date(2022, 1, 3)))
    got = bars.filter(pl.col("ts").dt.date() < dt.date(2024, 1, 1))
    assert got.height == want.height == 3 * 1440
    assert got.select("ts", "open", "high", "low", "close").equals(want.select("ts", "open", "high", "low", "close"))
    # the trades file: the same bars as the sample CSV read directly
    direct = ingest_file(SAMPLES / "trades" / "BTCUSDT-trades-2024-08-08.csv").bars.sort("ts")
    got = bars.filter(pl.col("ts").dt.date() == dt.date(2024, 8, 8)).select(BAR_COLUMNS)
    assert got.height == direct.height > 0 and got.equals(direct.select(BAR_COLUMNS))


def test_a_wrong_checksum_is_quarantined_listed_and_never_read_by_the_etl(project, archive):
    archive.corrupt_checksum(KLINES.format(2))
    res = _download(project, archive)
    assert res.status == "completed_with_errors"
    assert res.corrupt == [KLINES.format(2)]
    assert not (project / "data" / "raw" / KLINES.format(2)).exists()
    assert not [p for p in (project / "data" / "raw").rglob("*") if "2022-01-02" in p.name]  # no part file either
    assert (project / "runs" / res.run_id / "quarantine" / KLINES.format(2)).is_file()
    record = _record(project, res.run_id)
    assert list(record["results"]["corrupt"]) == [KLINES.format(2)]
    assert "differs from the published .CHECKSUM" in record["failed_items"][KLINES.format(2)]
    etl = _etl(project, ["data/raw/**/*"])
    assert etl.status == "completed" and not etl.quarantined
    assert sorted(_bars(project)["ts"].dt.date().unique().to_list()) == [dt.date(2022, 1, 1), dt.date(2022, 1, 3)]


def test_a_day_the_venue_did_not_publish_is_a_warning_listed_missing_and_the_run_goes_on(project, archive):
    archive.remove(KLINES.format(2))
    res = _download(project, archive)
    assert res.status == "completed"
    assert res.missing == [KLINES.format(2)]
    assert (project / "data" / "raw" / KLINES.format(3)).is_file()
    record = _record(project, res.run_id)
    assert record["results"]["missing"] == [KLINES.format(2)] and not record["failed_items"]
    log = (project / record["log"]).read_text()
    assert "WARNING" in log and "missing from the archive" in log


def test_503_with_retry_after_is_waited_out_and_then_downloaded(project, archive):
    url_path = "/" + KLINES.format(1)
    archive.inject_fault(Fault(kind="status", path=url_path, status=503, retry_after_s=1.5))
    res = _download(project, archive, end="2022-01-01")
    assert res.status == "completed" and res.files["status"].to_list() == ["downloaded"]
    times = [t for t, p, _ in archive.requests if p == url_path]
    assert len(times) == 2 and times[1] - times[0] >= 1.5  # the computed backoff alone is <= 1.0 s


def test_a_connection_dropped_mid_file_is_continued_with_a_range_request(project, archive, archive_files):
    archive.drop_mid_file(KLINES.format(1), after_bytes=10_000)
    res = _download(project, archive, end="2022-01-01")
    assert res.status == "completed"
    ranges = [r for _, p, r in archive.requests if p == "/" + KLINES.format(1)]
    assert ranges == ["", "bytes=10000-"]
    assert (project / "data" / "raw" / KLINES.format(1)).read_bytes() == archive_files[KLINES.format(1)]


def test_a_whole_month_comes_as_the_monthly_file(project, archive, archive_files):
    res = _download(project, archive, start="2022-01-01", end="2022-01-31")
    monthly = "data/futures/um/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2022-01.zip"
    assert res.files["path"].to_list() == [monthly]
    assert {p for _, p, _ in archive.requests} == {f"/{monthly}", f"/{monthly}.CHECKSUM"}
    assert (project / "data" / "raw" / monthly).read_bytes() == archive_files[monthly]


def test_resume_skips_verified_files_without_a_request_and_fetches_the_failed_one(project, archive):
    archive.drop_mid_file(KLINES.format(3), after_bytes=5_000, count=10)
    first = _download(project, archive, retry_attempts=2)
    assert first.status == "completed_with_errors" and first.files["status"].to_list() == [
        "downloaded", "downloaded", "failed"]
    part = project / "data" / "raw" / Path(KLINES.format(3)).parent / f".{Path(KLINES.format(3)).name}.part"
    assert part.stat().st_size == 10_000  # two attempts of 5,000 bytes each, the second continuing the first
    archive.drop_mid_file(KLINES.format(3), after_bytes=0, count=0)
    n_before = len(archive.requests)
    again = _download(project, archive, resume=True, run_id=first.run_id)
    assert again.status == "completed" and again.files["status"].to_list() == ["skipped", "skipped", "downloaded"]
    later = [(p, r) for _, p, r in archive.requests[n_before:]]
    assert later == [("/" + KLINES.format(3) + ".CHECKSUM", ""), ("/" + KLINES.format(3), "bytes=10000-")]
    assert not part.exists()


def test_bybit_files_are_checked_by_their_own_crc(project, archive, archive_files):
    path = "orderbook/linear/XRPUSDT/2024-12-01_XRPUSDT_ob500.data.zip"
    good = archive_files[path]
    archive.add_file(path, good[:-200] + bytes(200))  # the central directory zeroed: not a valid zip
    res = _download(project, archive, venue="bybit", market="linear", data_type="orderbook", symbols=["XRPUSDT"],
                    start="2024-12-01", end="2024-12-01")
    assert res.corrupt == [path] and not (project / "data" / "raw" / path).exists()
    archive.add_file(path, good)
    res = _download(project, archive, venue="bybit", market="linear", data_type="orderbook", symbols=["XRPUSDT"],
                    start="2024-12-01", end="2024-12-01")
    assert res.status == "completed" and (project / "data" / "raw" / path).read_bytes() == good


def test_downloaded_funding_rates_become_one_series_per_instrument_in_parquet(project, archive):
    _download(project, archive, data_type="fundingRate", start="2024-08-08", end="2024-08-08")
    _download(project, archive, data_type="fundingRate", start="2022-01-31", end="2022-01-31")
    etl = _etl(project, ["data/raw/**/*.zip"])
    assert etl.status == "completed" and not etl.quarantined and etl.outputs.height == 0
    path = project / "data" / "processed" / "binance" / "usdm" / "BTCUSDT" / "funding" / "funding.parquet"
    series = pl.read_parquet(path)
    assert series.columns == ["venue", "market", "symbol", "ts", "funding_rate", "funding_interval_h"]
    assert series.height == 2 * 31 * 3 and series["ts"].is_sorted() and series["ts"].n_unique() == series.height
    assert _record(project, etl.run_id)["outputs"]["funding_binance_usdm_BTCUSDT"].endswith("funding.parquet")


def test_a_server_slower_than_timeout_s_is_retried_and_the_file_arrives(project, archive, archive_files):
    url_path = "/" + KLINES.format(1)
    archive.inject_fault(Fault(kind="timeout", path=url_path, delay_s=2.0))
    res = _download(project, archive, end="2022-01-01", timeout_s=0.5)
    assert res.status == "completed" and res.files["status"].to_list() == ["downloaded"]
    assert [p for _, p, _ in archive.requests].count(url_path) == 2
    assert (project / "data" / "raw" / KLINES.format(1)).read_bytes() == archive_files[KLINES.format(1)]
    log = (project / _record(project, res.run_id)["log"]).read_text()
    assert "retrying in" in log and "Timeout" in log


def test_the_notebook_result_names_the_missing_and_corrupt_files_where_they_went_and_a_next_step_that_runs(
        project, archive):
    import html
    import re

    from quantnb.runner.cli import _parse_value

    archive.remove(KLINES.format(2))
    archive.corrupt_checksum(KLINES.format(3))
    res = _download(project, archive, end="2022-01-04")
    page = html.unescape(re.sub(r"<[^>]+>", " ", res._repr_html_()))
    assert re.search(r"4 file\(s\) planned: 2 downloaded, 1 missing, 1 corrupt", page), page
    assert f"2 verified file(s) in  {project / 'data' / 'raw'}" in page, page
    assert "BTCUSDT-1m-2022-01-02.zip" in page and "not published by the venue (404)" in page, page
    assert "BTCUSDT-1m-2022-01-03.zip" in page and "differs from the published .CHECKSUM" in page, page
    assert str(project / "runs" / res.run_id / "quarantine") in page, page
    globs = re.search(r"quantnb run etl -p input_globs '([^']+)'", page)
    assert globs, page
    etl = _etl(project, _parse_value(globs.group(1)))  # the suggested next step reads what was downloaded
    assert etl.status == "completed"
    assert sorted(_bars(project)["ts"].dt.date().unique().to_list()) == [dt.date(2022, 1, 1), dt.date(2022, 1, 4)]


def test_the_run_download_example_runs_as_written(project, archive):
    from quantnb.stages.download import run_download
    from tests._examples import run_examples

    run_examples(run_download, base_url=archive.url, project=str(project))
    assert len(list((project / "data" / "raw").rglob("BTCUSDT-1m-2022-01-0*.zip"))) == 3
