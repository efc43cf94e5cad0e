from __future__ import annotations

import datetime as dt
import itertools
import random

import polars as pl
import pytest

from quantnb.data import BAR_SCHEMA, ingest_file, merge_parts
from quantnb.data._schema import PART_SCHEMA
from quantnb.errors import DataError
from quantnb.testing.builders import write_binance_capture, write_bybit_file, write_ohlcv_csv, write_trades_csv
from tests.data._samples import BINANCE, BYBIT_BTC, BYBIT_XRP, TRADES, ingested

DAY = dt.date(2024, 1, 2)


@pytest.fixture(scope="module")
def overlapping_parts(tmp_path_factory) -> dict[str, pl.DataFrame]:
    """Four sources for BTCUSDT on the same minutes of 2024-01-02, relabelled as one instrument (the priority
    rules apply within an instrument; the real venues differ, see test_two_instruments_never_merge)."""
    return {k: v.with_columns(venue=pl.lit("test"), market=pl.lit("perp"))
            for k, v in _overlapping_raw(tmp_path_factory).items()}


@pytest.fixture(scope="module")
def overlapping_raw(tmp_path_factory) -> dict[str, pl.DataFrame]:
    return _overlapping_raw(tmp_path_factory)


def _overlapping_raw(tmp_path_factory) -> dict[str, pl.DataFrame]:
    d = tmp_path_factory.mktemp("overlap")
    return {
        "trades_csv": ingest_file(write_trades_csv(d, symbol="BTCUSDT", day="2024-01-02", seed=1).path).bars,
        "binance": ingest_file(write_binance_capture(d, symbol="BTCUSDT", day="20240102", seed=2).path).bars,
        "ohlcv": ingest_file(write_ohlcv_csv(d, symbol="BTCUSDT", start="2024-01-02 00:00", n_minutes=10,
                                             seed=3).path).bars,
        "bybit": ingest_file(write_bybit_file(d, symbol="BTCUSDT", day="2024-01-02", seed=4).path).bars,
    }


def _sources(parts: dict[str, pl.DataFrame], names: list[str]) -> list[str]:
    (bars,) = merge_parts([parts[n] for n in names]).values()
    return bars.filter(pl.col("ts") < dt.datetime(2024, 1, 2, 0, 2, tzinfo=dt.UTC))["ohlcv_source"].to_list()


def test_ohlcv_priority_is_trades_csv_then_stream_trades_then_ohlcv_csv_then_book_mid(overlapping_parts):
    p = overlapping_parts
    assert _sources(p, ["trades_csv", "binance", "ohlcv", "bybit"]) == ["trades_csv"] * 2
    assert _sources(p, ["binance", "ohlcv", "bybit"]) == ["binance_trades"] * 2
    assert _sources(p, ["ohlcv", "bybit"]) == ["ohlcv_csv"] * 2
    assert _sources(p, ["bybit"]) == ["bybit_book"] * 2


def test_ohlcv_fields_come_from_the_chosen_source_and_book_fields_from_a_book(overlapping_parts):
    p = overlapping_parts
    (bars,) = merge_parts(list(p.values())).values()
    trades = p["trades_csv"].select("ts", "open", "close", "volume", "n_trades")
    joined = bars.join(trades, on="ts", suffix="_src")
    assert joined.height == trades.height
    for col in ("open", "close", "volume", "n_trades"):
        assert joined[col].equals(joined[f"{col}_src"], check_names=False)
    book = p["binance"].filter(pl.col("source") == "binance_book").select("ts", "bid_depth_10", "n_book_updates")
    joined = bars.join(book, on="ts", suffix="_src")
    assert joined["bid_depth_10"].equals(joined["bid_depth_10_src"], check_names=False)
    only_ohlcv = bars.filter(pl.col("ohlcv_source") == "ohlcv_csv")
    assert only_ohlcv.height > 0 and only_ohlcv["n_trades"].is_null().all()


def test_book_only_symbol_gets_ohlc_from_the_mid_and_no_volume():
    (bars,) = merge_parts([ingested(BYBIT_XRP).bars]).values()
    row = bars.row(0, named=True)
    assert row["close"] == row["mid_close"] and row["volume"] is None and row["ohlcv_source"] == "bybit_book"
    assert row["low"] <= row["open"] <= row["high"]


def test_merge_result_does_not_depend_on_the_order_of_parts(overlapping_parts):
    parts = [*overlapping_parts.values(), ingested(BINANCE).bars, ingested(TRADES).bars, ingested(BYBIT_BTC).bars]
    reference = merge_parts(parts)
    rng = random.Random(0)
    for _ in range(3):
        shuffled = rng.sample(parts, len(parts))
        shuffled = [p.sample(fraction=1.0, shuffle=True, seed=rng.randrange(1000)) for p in shuffled]
        result = merge_parts(shuffled)
        assert list(result) == list(reference)
        for key, frame in reference.items():
            assert result[key].equals(frame), key


def test_final_frames_follow_bar_schema_one_row_per_minute_sorted(overlapping_parts):
    result = merge_parts(list(overlapping_parts.values()))
    assert list(result) == [("test/perp/BTCUSDT", DAY)]
    bars = result[("test/perp/BTCUSDT", DAY)]
    assert bars.schema == pl.Schema(BAR_SCHEMA)
    assert bars["ts"].is_sorted() and bars["ts"].is_unique().all()
    assert (bars["ts"].dt.date() == DAY).all()


def test_gap_before_marks_the_first_bar_after_a_hole_of_two_minutes_or_more(tmp_path):
    built = write_ohlcv_csv(tmp_path, defect="time_gap", n_minutes=60, seed=7)
    (bars,) = merge_parts([ingest_file(built.path).bars]).values()
    assert bars["gap_before"].sum() == 1
    gap_row = bars.with_row_index().filter(pl.col("gap_before")).row(0, named=True)
    assert gap_row["index"] == built.defect_line - 2  # the defect's CSV line minus the header, 0-based
    assert bars["gap_before"][0] is False


def test_days_are_split_at_utc_midnight_and_gaps_are_seen_across_days(tmp_path):
    built = write_ohlcv_csv(tmp_path, start="2024-01-01 23:00", n_minutes=120, seed=8)
    result = merge_parts([ingest_file(built.path).bars])
    assert [day for _, day in result] == [dt.date(2024, 1, 1), dt.date(2024, 1, 2)]
    assert [f.height for f in result.values()] == [60, 60]
    assert not any(f["gap_before"].any() for f in result.values())


def test_merging_nothing_gives_nothing():
    assert merge_parts([]) == {}
    assert merge_parts([pl.DataFrame(schema=PART_SCHEMA)]) == {}


def test_part_with_unknown_source_is_refused():
    part = pl.DataFrame({"symbol": ["X"], "ts": [dt.datetime(2024, 1, 1, tzinfo=dt.UTC)], "source": ["mystery"],
                         "file": ["x"]})
    with pytest.raises(DataError, match="unknown source"):
        merge_parts([part])


def test_all_permutations_of_three_parts_agree(overlapping_parts):
    parts = [overlapping_parts["trades_csv"], overlapping_parts["ohlcv"], overlapping_parts["bybit"]]
    results = [merge_parts(list(perm)) for perm in itertools.permutations(parts)]
    for other in results[1:]:
        assert all(other[k].equals(v) for k, v in results[0].items())


def test_two_instruments_never_merge(overlapping_raw):
    """Binance USD-M (capture + trades CSV), Bybit linear and an OHLCV CSV of 'BTCUSDT': three instruments."""
    result = merge_parts(list(overlapping_raw.values()))
    assert list(result) == [("binance/usdm/BTCUSDT", DAY), ("bybit/linear/BTCUSDT", DAY), ("unknown/perp/BTCUSDT", DAY)]
    for (instrument, _), bars in result.items():
        venue, market, symbol = instrument.split("/")
        assert bars.select("venue", "market", "symbol").unique().rows() == [(venue, market, symbol)]
    assert set(result[("bybit/linear/BTCUSDT", DAY)]["ohlcv_source"]) == {"bybit_book"}
    assert set(result[("binance/usdm/BTCUSDT", DAY)]["ohlcv_source"]) == {"trades_csv"}


def test_same_symbol_in_two_markets_of_one_venue_stays_apart(overlapping_raw):
    linear = overlapping_raw["bybit"]
    spot = linear.with_columns(market=pl.lit("spot"), mid_close=pl.col("mid_close") * 1.01)
    result = merge_parts([linear, spot])
    assert sorted(result) == [("bybit/linear/BTCUSDT", DAY), ("bybit/spot/BTCUSDT", DAY)]
    lin, spo = result[("bybit/linear/BTCUSDT", DAY)], result[("bybit/spot/BTCUSDT", DAY)]
    assert lin.height == spo.height and not lin["mid_close"].equals(spo["mid_close"])
