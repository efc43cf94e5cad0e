"""Binance spot captures (spot rules), instruments from folders, files without data rows, conflicting duplicates."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from quantnb.data import ingest_file
from quantnb.testing.builders import write_ohlcv_csv, write_trades_csv
from tests.data._samples import BINANCE, BYBIT_XRP, ingested

BOOK_COLS = ["ts", "mid_close", "micro_price_close", "spread_bps_mean", "bid_depth_10", "ask_depth_10",
             "imbalance_10", "n_book_updates"]


def spot_capture(dest: Path, *, gap_at: int | None = None) -> Path:
    """The real USD-M capture rewritten by Binance's spot rules: no ``pu``, each ``U`` = previous ``u`` + 1.

    ``gap_at``: the index of a depth event whose ``U`` is moved one past the rule (a sequence gap).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    prev_u, n_depth = None, 0
    with gzip.open(BINANCE, "rt") as src, gzip.open(dest, "wt") as out:
        for line in src:
            head, _, payload = line.partition(" ")
            obj = json.loads(payload)
            data = obj.get("data")
            if isinstance(data, dict) and data.get("e") == "depthUpdate":
                data.pop("pu")
                if prev_u is not None:
                    data["U"] = prev_u + 1 + (1 if n_depth == gap_at else 0)
                prev_u = data["u"]
                n_depth += 1
                obj["stream"] = "btcusdt@depth@100ms"
            out.write(f"{head} {json.dumps(obj, separators=(',', ':'))}\n")
    return dest


def test_spot_capture_syncs_by_the_spot_rules_and_gives_the_usdm_book(tmp_path):
    usdm = ingested(BINANCE)
    spot = ingest_file(spot_capture(tmp_path / "BTCUSDT_20240808.gz"), on_crossed="skip")
    assert spot.market == "spot" and spot.venue == "binance" and usdm.market == "usdm"
    assert spot.quality.seq_gaps == 0 and spot.quality.snapshots == 1
    assert spot.book.best_bid == usdm.book.best_bid and spot.book.best_ask == usdm.book.best_ask
    book = {name: r.bars.filter(pl.col("source") == "binance_book").select(BOOK_COLS) for name, r in
            (("spot", spot), ("usdm", usdm))}
    assert book["spot"].height > 0 and book["spot"]["mid_close"].drop_nulls().len() > 0
    assert book["spot"].equals(book["usdm"])


def test_spot_capture_sequence_gap_is_detected(tmp_path):
    spot = ingest_file(spot_capture(tmp_path / "BTCUSDT_20240808.gz", gap_at=100), on_crossed="skip")
    assert spot.quality.seq_gaps == 1
    assert any("spot rule" in e["message"] for e in spot.quality.examples)


def test_market_comes_from_the_archive_folders_else_the_parameter(tmp_path):
    from quantnb.data._io import market_from_path

    assert market_from_path("/d/orderbook/spot/XRPUSDT/2024-12-01_XRPUSDT_ob500.data.zip", "bybit_book") == "spot"
    assert market_from_path("/d/orderbook/linear/XRPUSDT/x.data.zip", "bybit_book") == "linear"
    assert market_from_path("/d/data/futures/um/daily/trades/BTCUSDT/x.csv", "trades_csv") == "usdm"
    assert market_from_path("/d/data/futures/cm/daily/trades/BTCUSD_PERP/x.csv", "trades_csv") == "coinm"
    assert market_from_path("/d/data/spot/daily/trades/BTCUSDT/x.csv", "trades_csv") == "spot"
    assert market_from_path("/spot/linear/x.data", "bybit_book") == "linear"  # the nearest folder wins
    assert market_from_path("/d/raw/x.data", "bybit_book") is None
    spot_dir = tmp_path / "orderbook" / "spot" / "XRPUSDT"
    spot_dir.mkdir(parents=True)
    shutil.copy(BYBIT_XRP, spot_dir / BYBIT_XRP.name)
    assert ingest_file(spot_dir / BYBIT_XRP.name).market == "spot"
    plain = ingest_file(BYBIT_XRP, default_markets={"bybit_book": "inverse"})
    assert plain.market == "inverse" and set(plain.bars["market"]) == {"inverse"}
    assert set(plain.bars["venue"]) == {"bybit"}
    csv = write_ohlcv_csv(tmp_path / "o", n_minutes=5).path
    assert ingest_file(csv, ohlcv_venue="ftx").venue == "ftx"


@pytest.mark.parametrize("kind", ["ohlcv", "trades"])
def test_csv_with_a_header_only_is_reported_not_silent(tmp_path, log_lines, kind):
    built = (write_ohlcv_csv(tmp_path, n_minutes=5) if kind == "ohlcv" else write_trades_csv(tmp_path, seed=1)).path
    header = built.read_text().splitlines()[0]
    built.write_text(header + "\n")
    result = ingest_file(built)
    assert result.bars.height == 0
    assert result.quality.no_data_rows is True and result.quality.to_dict()["no_data_rows"] is True
    assert any(line.startswith("WARNING") and "no data rows" in line and str(built) in line for line in log_lines)


def test_duplicate_timestamps_with_other_values_are_counted_with_both_values(tmp_path):
    built = write_ohlcv_csv(tmp_path, n_minutes=10, seed=5).path
    lines = built.read_text().splitlines()
    ts, o, h, low, c, v = lines[3].split(",")
    lines.insert(4, ",".join([ts, o, h, low, c, str(float(v) + 1.5)]))  # same minute, other volume: line 5
    lines.insert(6, lines[5])  # an exact repeat of the row now on line 6: a duplicate, not a conflict
    built.write_text("\n".join(lines) + "\n")
    q = ingest_file(built).quality
    assert q.duplicates == 2 and q.conflicting_duplicates == 1
    (conflict,) = q.duplicate_conflicts
    assert conflict["line"] == 5 and conflict["kept_line"] == 4
    assert conflict["kept"]["volume"] == pytest.approx(float(v))
    assert conflict["dropped"]["volume"] == pytest.approx(float(v) + 1.5)
    assert ts.split(".")[0].replace(" ", "T") in conflict["key"]


def test_duplicate_trade_ids_with_other_values_are_counted(tmp_path):
    built = write_trades_csv(tmp_path, seed=2).path
    lines = built.read_text().splitlines()
    fields = lines[5].split(",")
    fields[1] = str(float(fields[1]) + 10)  # same trade id, another price
    lines.append(",".join(fields))
    built.write_text("\n".join(lines) + "\n")
    q = ingest_file(built).quality
    assert q.conflicting_duplicates == 1
    (conflict,) = q.duplicate_conflicts
    assert conflict["kept"]["price"] + 10 == pytest.approx(conflict["dropped"]["price"])
    assert conflict["kept_line"] == 6


def test_ingest_refuses_a_fifo_or_a_directory_without_blocking(tmp_path):
    import os

    from quantnb.errors import DataError

    fifo = tmp_path / "2024-12-01_XRPUSDT_ob500.data"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="FIFO"):
        ingest_file(fifo)
    folder = tmp_path / "BTCUSDT_20240808.gz"
    folder.mkdir()
    with pytest.raises(DataError, match="a directory"):
        ingest_file(folder)
    with pytest.raises(FileNotFoundError):
        ingest_file(tmp_path / "BTCUSDT_20240807.gz")
