from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest

from quantnb.data import ingest_file, merge_parts
from quantnb.errors import DataError
from quantnb.testing.builders import write_bybit_file
from tests.data._samples import BYBIT_BTC, BYBIT_XRP, ingested


def test_real_bybit_btcusdt_ends_at_documented_touch_with_no_gap_and_no_crossing():
    result = ingested(BYBIT_BTC)
    assert (result.book.best_bid, result.book.best_ask) == (65114.2, 65114.3)
    assert result.book.n_levels() == (200, 200)
    q = result.quality
    assert (q.messages, q.snapshots, q.book_updates) == (414, 1, 414)  # 1 snapshot + 413 deltas (SOURCES.md)
    assert q.seq_gaps == q.crossed == q.locked == q.resyncs == 0
    assert q.defects == {}
    assert result.bars["n_book_updates"].sum() == 414


def test_real_bybit_xrpusdt_zip_is_read_through_the_archive():
    result = ingested(BYBIT_XRP)
    assert result.symbol == "XRPUSDT"
    assert (result.quality.messages, result.quality.snapshots) == (50, 1)
    assert result.quality.defects == {}
    bar = result.bars.row(0, named=True)
    assert bar["bid_depth_10"] > 0 and bar["ask_depth_10"] > 0
    assert bar["mid_close"] == pytest.approx((result.book.best_bid + result.book.best_ask) / 2)


def test_first_snapshot_and_rows_are_logged_at_info(log_lines):
    ingest_file(BYBIT_BTC)
    assert any("first snapshot received: u=" in line and line.startswith("INFO") for line in log_lines)
    assert any("rows after the 1-minute resample" in line for line in log_lines)
    assert any("414 messages processed" in line for line in log_lines)


@pytest.mark.parametrize(
    ("defect", "needle"),
    [
        ("crossed", "crossed"),
        ("truncated_line", "not valid JSON"),
        ("non_json_line", "not valid JSON"),
        ("missing_field", "missing required field `u`"),
        ("nan_price", "NaN"),
        ("delta_before_snapshot", "delta before any snapshot"),
    ],
)
def test_corrupt_bybit_file_raises_data_error_naming_file_line_and_fix(tmp_path, defect, needle):
    built = write_bybit_file(tmp_path, defect=defect, seed=11)
    with pytest.raises(DataError) as err:
        ingest_file(built.path)
    message = str(err.value)
    assert str(built.path) in message and f"line {built.defect_line}:" in message
    assert needle in message and ("re-download" in message or "pass" in message)
    assert err.value.line == built.defect_line and err.value.path == str(built.path)


def test_bad_zip_raises_data_error_mentioning_the_zip(tmp_path):
    built = write_bybit_file(tmp_path, defect="bad_zip")
    with pytest.raises(DataError, match="not a valid zip archive"):
        ingest_file(built.path)


def test_skip_until_snapshot_counts_the_skipped_deltas_instead_of_failing(tmp_path):
    built = write_bybit_file(tmp_path, defect="delta_before_snapshot", n_deltas=200, seed=2)
    result = ingest_file(built.path, skip_until_snapshot=True)
    assert result.quality.skipped_before_snapshot == 200
    assert result.bars["mid_close"].is_null().all()


def test_sequence_gap_is_counted_and_the_book_stays_unsynced_without_a_new_snapshot(tmp_path, log_lines):
    built = write_bybit_file(tmp_path, defect="seq_gap", seed=4)
    result = ingest_file(built.path)
    q = result.quality
    assert q.seq_gaps == 1
    assert q.skipped_unsynced == q.messages - built.defect_line + 1
    assert q.unsynced_minutes >= 1
    assert any(line.startswith("WARNING") and f"line {built.defect_line}" in line and "jumped" in line
               for line in log_lines)
    last = result.bars.sort("ts").row(-1, named=True)
    assert last["bid_depth_10"] is None and last["n_book_updates"] == 0


def test_mid_stream_snapshot_resets_the_book_and_counts_a_resync(tmp_path):
    built = write_bybit_file(tmp_path, defect="mid_stream_snapshot", seed=5)
    result = ingest_file(built.path)
    assert (result.quality.resyncs, result.quality.snapshots, result.quality.seq_gaps) == (1, 2, 0)
    assert result.bars["resyncs"].sum() == 1


def test_negative_size_level_is_counted_and_skipped(tmp_path):
    built = write_bybit_file(tmp_path, defect="negative_size", seed=6)
    result = ingest_file(built.path)
    assert result.quality.negative_size == 1
    assert result.quality.examples[0]["line"] == built.defect_line


def test_crossed_book_with_skip_policy_is_counted_and_left_out_of_features(tmp_path):
    built = write_bybit_file(tmp_path, defect="crossed", seed=7)
    result = ingest_file(built.path, on_crossed="skip")
    assert result.quality.crossed >= 1
    assert result.quality.examples[0]["line"] == built.defect_line


def test_time_gap_is_counted_and_flags_the_next_bar(tmp_path):
    built = write_bybit_file(tmp_path, defect="time_gap", seed=8)
    result = ingest_file(built.path)
    assert result.quality.time_gaps == 1
    (bars,) = merge_parts([result.bars]).values()
    assert bars["gap_before"].sum() == 1


def _naive_minutes(path: Path) -> pl.DataFrame:
    """A deliberately simple reference: json per line, dict book, full sort at each minute close."""
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    rows, spreads, minute = [], [], None

    def close() -> None:
        b = sorted(bids.items(), reverse=True)
        a = sorted(asks.items())
        bd, ad = sum(s for _, s in b[:10]), sum(s for _, s in a[:10])
        (pb, qb), (pa, qa) = b[0], a[0]
        rows.append({"minute": minute, "mid_close": (pb + pa) / 2, "micro": (pb * qa + pa * qb) / (qb + qa),
                     "spread": sum(spreads) / len(spreads), "bid_depth_10": bd, "ask_depth_10": ad,
                     "imbalance_10": (bd - ad) / (bd + ad), "n": len(spreads)})

    for line in path.read_text().splitlines():
        msg = json.loads(line)
        if minute is not None and msg["ts"] // 60_000 != minute:
            close()
            spreads = []
        minute = msg["ts"] // 60_000
        if msg["type"] == "snapshot":
            bids.clear()
            asks.clear()
        for side, levels in ((bids, msg["data"]["b"]), (asks, msg["data"]["a"])):
            for p, s in levels:
                if float(s) == 0:
                    side.pop(float(p), None)
                else:
                    side[float(p)] = float(s)
        bb, ba = max(bids), min(asks)
        spreads.append(1e4 * (ba - bb) / ((ba + bb) / 2))
    close()
    return pl.DataFrame(rows)


def test_bybit_minute_features_match_a_naive_reference(tmp_path):
    built = write_bybit_file(tmp_path, n_deltas=900, seed=9)
    bars = ingest_file(built.path).bars.sort("ts")
    ref = _naive_minutes(built.path)
    assert bars.height == ref.height == 4
    assert bars["n_book_updates"].to_list() == ref["n"].to_list()
    for ours, theirs in (("mid_close", "mid_close"), ("micro_price_close", "micro"), ("spread_bps_mean", "spread"),
                         ("bid_depth_10", "bid_depth_10"), ("ask_depth_10", "ask_depth_10"),
                         ("imbalance_10", "imbalance_10")):
        for a, b in zip(bars[ours].to_list(), ref[theirs].to_list(), strict=True):
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), ours


def test_zip_member_failing_its_crc_raises_data_error(tmp_path):
    data = BYBIT_XRP.read_bytes()
    bad = tmp_path / BYBIT_XRP.name
    bad.write_bytes(data[:30_000] + bytes(b ^ 0xFF for b in data[30_000:30_100]) + data[30_100:])
    with pytest.raises(DataError, match="corrupt zip member"):
        ingest_file(bad)


@pytest.mark.parametrize("name", ["2024-01-01_BTCUSDT_ob200.data", "BTCUSDT_20240101.gz"])
def test_order_book_file_without_messages_raises_data_error(tmp_path, name):
    import gzip

    path = tmp_path / name
    path.write_bytes(gzip.compress(b"") if name.endswith(".gz") else b"")
    with pytest.raises(DataError, match="holds no messages"):
        ingest_file(path)
