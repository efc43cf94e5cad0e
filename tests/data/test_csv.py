from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from quantnb.data import ingest_file
from quantnb.errors import DataError
from quantnb.testing.builders import write_ohlcv_csv, write_trades_csv
from tests.data._samples import OHLCV, TRADES, ingested


def test_real_ohlcv_has_the_documented_rows_range_and_extremes():
    result = ingested(OHLCV)
    bars = result.bars
    assert bars.height == 45_031 and result.quality.defects == {}
    assert (bars["ts"].diff().drop_nulls() == dt.timedelta(minutes=1)).all()  # consecutive minutes
    assert bars["ts"].min() == dt.datetime(2021, 12, 31, 23, 1, tzinfo=dt.UTC)
    assert bars["ts"].max() == dt.datetime(2022, 2, 1, 5, 31, tzinfo=dt.UTC)
    assert bars["high"].max() == 48_080
    low = bars.filter(pl.col("low") == pl.col("low").min())
    assert low["low"][0] == 32_837 and low["ts"][0].date() == dt.date(2022, 1, 24)
    assert bars["n_trades"].is_null().all() and bars["source"].unique().to_list() == ["ohlcv_csv"]


def test_real_trades_csv_holds_the_documented_trades():
    result = ingested(TRADES)
    assert result.quality.trades == result.quality.messages == 21_313
    assert result.bars["n_trades"].sum() == 21_313 and result.quality.defects == {}
    assert (result.bars["buy_volume"] <= result.bars["volume"]).all()


@pytest.mark.parametrize("unit", ["ms", "s"])
def test_ohlcv_epoch_timestamps_are_accepted(tmp_path, unit):
    source = write_ohlcv_csv(tmp_path / "iso", n_minutes=30, seed=1).path
    frame = pl.read_csv(source, infer_schema=False)
    epoch = frame["timestamp"].str.to_datetime(time_unit="ms").dt.epoch(unit)
    path = tmp_path / source.name
    frame.with_columns(timestamp=epoch).write_csv(path)
    assert ingest_file(path).bars.equals(ingest_file(source).bars.with_columns(file=pl.lit(path.name)))


def test_headerless_trades_csv_reads_like_one_with_header(tmp_path):
    with_header = ingest_file(write_trades_csv(tmp_path / "a", seed=3).path).bars
    without = ingest_file(write_trades_csv(tmp_path / "b", seed=3, header=False).path).bars
    assert with_header.equals(without)


@pytest.mark.parametrize(("writer", "defect", "needle"), [
    (write_ohlcv_csv, "bad_number", "is not a number"), (write_trades_csv, "bad_number", "is not a number"),
    (write_trades_csv, "nan_price", "NaN")])  # a NaN *bar* price rejects the bar (tests/data/test_bar_rules.py)
def test_unparseable_value_or_nan_trade_price_raises_data_error_with_line(tmp_path, writer, defect, needle):
    built = writer(tmp_path, defect=defect, seed=4)
    with pytest.raises(DataError) as err:
        ingest_file(built.path)
    assert f"{built.path} line {built.defect_line}:" in str(err.value) and needle in str(err.value)


@pytest.mark.parametrize("writer", [write_ohlcv_csv, write_trades_csv])
@pytest.mark.parametrize(
    ("defect", "counter"),
    [("duplicate_ts", "duplicates"), ("out_of_order", "out_of_order"), ("time_gap", "time_gaps"),
     ("non_positive_price", "non_positive_price")],
)
def test_csv_defects_are_counted_with_their_line_and_logged(tmp_path, writer, defect, counter, log_lines):
    built = writer(tmp_path, defect=defect, seed=5)
    result = ingest_file(built.path)
    assert getattr(result.quality, counter) == 1
    assert {"kind": counter, "line": built.defect_line} in [
        {"kind": e["kind"], "line": e["line"]} for e in result.quality.examples]
    assert any(line.startswith("WARNING") and f"line {built.defect_line}" in line for line in log_lines)


def test_quality_report_round_trips_through_json(tmp_path):
    import json

    result = ingest_file(write_ohlcv_csv(tmp_path, defect="duplicate_ts", seed=6).path)
    report = json.loads(result.quality.to_json())
    assert report == result.quality.to_dict()
    assert report["duplicates"] == 1 and report["path"] == str(result.path)


def test_a_real_ohlcv_file_stored_newest_first_gives_the_same_bars(tmp_path):
    """Exports that list the latest bar first are read oldest-first, not cut to one bar by the out_of_order rule."""
    lines = OHLCV.read_text().splitlines()
    path = tmp_path / OHLCV.name
    path.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    got = ingest_file(path, on_crossed="skip")
    assert got.bars.drop("file").equals(ingested(OHLCV).bars.drop("file")) and got.quality.defects == {}
