"""Bad input to the order book and the quality report raises a QuantnbError, never a bare KeyError/ValueError."""

from __future__ import annotations

import pytest

from quantnb.data import OrderBook
from quantnb.data._quality import QualityReport
from quantnb.errors import ConfigError, DataError, QuantnbError


def test_unknown_quality_counter_is_a_config_error_naming_the_file_and_the_known_counters():
    report = QualityReport(path="data/raw/x.data.zip", source="bybit_book")
    with pytest.raises(ConfigError, match=r"data/raw/x\.data\.zip: unknown quality counter 'seq_gap'.*seq_gaps"):
        report.flag("seq_gap", 12, "gap")
    assert report.seq_gaps == 0


def test_order_book_levels_with_a_bad_side_is_a_config_error_naming_the_fix():
    book = OrderBook()
    book.reset([(100.0, 1.0)], [(101.0, 2.0)])
    with pytest.raises(ConfigError, match=r"side='buy'; pass side='bid' or side='ask'"):
        book.levels("buy")


@pytest.mark.parametrize("bad", [[(100.0, 1.0, 7.0)], [100.0], [("100.0", 1.0)]])
def test_malformed_delta_level_is_a_data_error_not_a_value_or_type_error(bad):
    book = OrderBook()
    book.reset([(99.0, 1.0), (100.0, 1.0)], [(101.0, 2.0)])
    with pytest.raises(DataError, match=r"malformed delta level .*\(price, size\) pair"):
        book.apply(bad, [])


def test_malformed_snapshot_level_is_a_data_error_caught_by_the_root():
    with pytest.raises(QuantnbError, match=r"malformed snapshot level"):
        OrderBook().reset([(100.0,)], [])


def test_data_error_names_bar_and_field_and_keeps_them_across_pickling():
    import pickle

    import polars as pl

    from quantnb.data import check_bars

    ts = pl.Series("ts", [0, 60_000_000, 60_000_000], dtype=pl.Datetime("us", "UTC"))
    with pytest.raises(DataError, match=r"row 2: ts .* is not after the previous bar") as info:
        check_bars(pl.DataFrame({"ts": ts}), what="x.parquet")
    assert (info.value.bar, info.value.field) == (2, "ts")
    back = pickle.loads(pickle.dumps(DataError("m", path="p", line=3, bar="2026-01-01T00:00", field="close")))
    assert (str(back), back.path, back.line, back.bar, back.field) == ("m", "p", 3, "2026-01-01T00:00", "close")
