from __future__ import annotations

import gzip

import polars as pl
import pytest

from quantnb.data import ingest_file
from quantnb.errors import DataError
from quantnb.testing.builders import write_binance_capture
from tests.data._samples import BINANCE, TRADES, ingested


def _line_counts() -> dict[str, int]:
    counts = {"depth": 0, "trade": 0, "bookTicker": 0, "snapshot": 0, "lines": 0}
    with gzip.open(BINANCE, "rt") as fh:
        for line in fh:
            counts["lines"] += 1
            for key, needle in (("depth", "@depth"), ("trade", "@trade\""), ("bookTicker", "@bookTicker"),
                                ("snapshot", "lastUpdateId")):
                counts[key] += needle in line
    return counts


def test_real_capture_message_counts_match_the_documented_file():
    q = ingested(BINANCE).quality
    counts = _line_counts()
    assert (counts["lines"], counts["trade"], counts["bookTicker"]) == (93_954, 21_313, 66_089)  # SOURCES.md
    assert (q.lines, q.trades, q.bbo_updates, q.snapshots) == (93_954, 21_313, 66_089, 1)
    assert q.messages == q.lines - 1  # the snapshot line seeds the book, it is not a stream message


def test_real_capture_stays_continuous_after_syncing_to_the_snapshot():
    result = ingested(BINANCE)
    q = result.quality
    assert q.seq_gaps == q.resyncs == q.skipped_unsynced == q.unsynced_minutes == q.crossed == 0
    assert q.defects == {}
    # every diff is either dropped by the rule u < lastUpdateId or applied, none skipped
    assert q.stale_dropped + q.book_updates == _line_counts()["depth"]
    book = result.bars.filter(pl.col("source") == "binance_book")
    assert book["bid_depth_10"].is_not_null().all() and book["spread_bps_mean"].min() > 0
    assert result.book.best_bid < result.book.best_ask


def test_real_capture_trades_give_the_same_bars_as_the_trades_csv_of_that_day():
    stream = ingested(BINANCE).bars.filter(pl.col("source") == "binance_trades")
    csv = ingested(TRADES).bars
    cols = ["ts", "open", "high", "low", "close", "n_trades"]
    assert stream.select(cols).equals(csv.select(cols))
    for col in ("volume", "buy_volume"):
        assert stream[col].to_list() == pytest.approx(csv[col].to_list(), rel=1e-12)
    assert csv["n_trades"].sum() == 21_313


def test_snapshot_and_sync_are_logged(tmp_path, log_lines):
    ingest_file(write_binance_capture(tmp_path, seed=1).path)
    assert any("first REST snapshot received: lastUpdateId=" in line for line in log_lines)
    assert any("book synced: first diff U=" in line for line in log_lines)


def test_buffered_diffs_are_replayed_so_the_first_minute_has_book_features(tmp_path):
    result = ingest_file(write_binance_capture(tmp_path, seed=2).path)
    q = result.quality
    assert q.stale_dropped == 3 and q.seq_gaps == 0  # the builder puts lastUpdateId inside the 4th diff
    first = result.bars.filter(pl.col("source") == "binance_book").sort("ts").row(0, named=True)
    assert first["mid_close"] is not None and first["resyncs"] == 0


def test_sequence_gap_unsyncs_the_book_until_a_new_snapshot_and_is_counted(tmp_path):
    built = write_binance_capture(tmp_path, defect="seq_gap", seed=3)
    q = ingest_file(built.path).quality
    assert q.seq_gaps == 1 and q.unsynced_minutes >= 1 and q.skipped_unsynced > 0
    assert q.examples[0]["line"] == built.defect_line


def test_capture_without_snapshot_has_no_book_features_and_says_so(tmp_path, log_lines):
    result = ingest_file(write_binance_capture(tmp_path, defect="no_snapshot", seed=4).path)
    book = result.bars.filter(pl.col("source") == "binance_book")
    assert book.height > 0 and book["mid_close"].is_null().all()
    assert result.quality.unsynced_minutes == book.height
    assert any("no REST depth snapshot" in line for line in log_lines)


@pytest.mark.parametrize(("defect", "needle"), [("nan_price", "NaN"), ("crossed", "crossed"),
                                                 ("non_json_line", "not valid JSON")])
def test_corrupt_capture_line_raises_data_error_with_file_and_line(tmp_path, defect, needle):
    built = write_binance_capture(tmp_path, defect=defect, seed=5)
    with pytest.raises(DataError) as err:
        ingest_file(built.path)
    assert f"{built.path} line {built.defect_line}:" in str(err.value) and needle in str(err.value)


def test_truncated_gzip_raises_data_error_naming_the_first_unreadable_line(tmp_path):
    data = BINANCE.read_bytes()
    cut = tmp_path / "BTCUSDT_20240809.gz"
    cut.write_bytes(data[: len(data) // 3])
    readable = 0
    with gzip.open(cut, "rb") as fh:
        try:
            for _ in fh:
                readable += 1
        except EOFError:
            pass
    with pytest.raises(DataError) as err:
        ingest_file(cut)
    assert f"{cut} line {readable + 1}: the gzip stream ends early" in str(err.value)
    assert "re-download" in str(err.value)


def test_not_a_gzip_file_raises_data_error(tmp_path):
    fake = tmp_path / "BTCUSDT_20240809.gz"
    fake.write_bytes(b"this is plain text, not gzip\n")
    with pytest.raises(DataError, match="not a valid gzip file"):
        ingest_file(fake)
