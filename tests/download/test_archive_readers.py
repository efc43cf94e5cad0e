"""The ETL reads every archive type the download stage fetches (built from the real samples)."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import polars as pl
import pytest

from quantnb.data import ingest_file
from quantnb.errors import DataError
from quantnb.testing.archive_server import zip_bytes
from tests.conftest import SAMPLES

UM = "data/futures/um"
TRADE_BAR = ["ts", "open", "high", "low", "close", "volume", "buy_volume"]


def _put(root: Path, rel: str, data: bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _member(data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.read(zf.namelist()[0])


def _trades_bars() -> pl.DataFrame:
    return ingest_file(SAMPLES / "trades" / "BTCUSDT-trades-2024-08-08.csv").bars.sort("ts")


def test_spot_klines_without_header_in_microseconds_equal_futures_klines_with_header(tmp_path, archive_files):
    futures_zip = archive_files[f"{UM}/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2022-01-05.zip"]
    futures = _put(tmp_path, f"{UM}/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2022-01-05.zip", futures_zip)
    lines = _member(futures_zip).decode().splitlines()[1:]  # spot: no header, times in us (from 2025 on)
    spot_rows = [",".join([str(int(f[0]) * 1000), *f[1:6], str(int(f[6]) * 1000 + 999), *f[7:]])
                 for f in (line.split(",") for line in lines)]
    spot = _put(tmp_path, "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2022-01-05.zip",
                zip_bytes("BTCUSDT-1m-2022-01-05.csv", ("\n".join(spot_rows) + "\n").encode()))
    a, b = ingest_file(futures), ingest_file(spot)
    assert (a.venue, a.market, b.market) == ("binance", "usdm", "spot")
    cols = ["ts", "open", "high", "low", "close", "volume", "n_trades", "buy_volume"]
    assert a.bars.height == 1440 and a.bars.select(cols).equals(b.bars.select(cols))
    assert a.bars["source"].unique().to_list() == ["binance_klines"]


def test_agg_trades_give_the_bars_of_the_trades_they_aggregate(tmp_path, archive_files):
    rel = f"{UM}/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-08-08.zip"
    got = ingest_file(_put(tmp_path, rel, archive_files[rel]))
    want = _trades_bars()
    assert got.bars.height == want.height
    assert got.bars.sort("ts").select(TRADE_BAR).equals(want.select(TRADE_BAR))
    assert got.bars["n_trades"].sum() == want["n_trades"].sum() == 21_313  # first..last trade ids


def test_book_ticker_gives_the_spread_of_the_captured_quotes(tmp_path, archive_files):
    rel = f"{UM}/daily/bookTicker/BTCUSDT/BTCUSDT-bookTicker-2024-08-08.zip"
    got = ingest_file(_put(tmp_path, rel, archive_files[rel])).bars.sort("ts")
    quotes = pl.read_csv(_member(archive_files[rel]))
    assert got["n_book_updates"].sum() == quotes.height == 66_089
    last = quotes.sort("transaction_time", "update_id").tail(1).row(0, named=True)
    assert got["mid_close"][-1] == pytest.approx((last["best_bid_price"] + last["best_ask_price"]) / 2)
    assert (got["spread_bps_mean"] > 0).all() and got["bid_depth_10"].is_null().all()


def test_funding_rates_become_a_series_per_instrument_not_bars(tmp_path, archive_files):
    rel = f"{UM}/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-08.zip"
    got = ingest_file(_put(tmp_path, rel, archive_files[rel]))
    assert got.bars.height == 0 and not got.quality.no_data_rows
    assert got.funding is not None and got.funding.height == 31 * 3
    assert got.funding.select("venue", "market", "symbol").unique().rows() == [("binance", "usdm", "BTCUSDT")]
    assert got.funding["ts"].dt.hour().unique().sort().to_list() == [0, 8, 16]


def test_bybit_trades_give_the_bars_of_the_same_trades(tmp_path, archive_files):
    rel = "trading/BTCUSDT/BTCUSDT2024-08-08.csv.gz"
    got = ingest_file(_put(tmp_path, rel, archive_files[rel]))
    assert (got.venue, got.market) == ("bybit", "linear")
    want = _trades_bars()
    assert got.bars.sort("ts").select(*TRADE_BAR, "n_trades").equals(want.select(*TRADE_BAR, "n_trades"))
    inverse = ingest_file(_put(tmp_path, "trading/BTCUSD/BTCUSD2024-08-08.csv.gz", archive_files[rel]))
    assert inverse.market == "inverse"


def test_a_bad_kline_value_names_the_file_line_and_value(tmp_path):
    body = b"1640995200000,46216.9,46271.0,46208.9,46250.0,1.0,1640995259999,46250,0,0,0,0\n" \
           b"1640995260000,46250.0,oops,46208.9,46250.0,1.0,1640995319999,46250,0,0,0,0\n"
    path = _put(tmp_path, "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2022-01-01.zip",
                zip_bytes("BTCUSDT-1m-2022-01-01.csv", body))
    with pytest.raises(DataError, match=r"BTCUSDT-1m-2022-01-01.zip line 2: column 'high' value 'oops'"):
        ingest_file(path)


def test_other_kline_intervals_are_refused_with_the_fix(tmp_path):
    path = _put(tmp_path, "BTCUSDT-5m-2022-01-01.csv", b"1640995200000,1,1,1,1,1,1,1,0,0,0,0\n")
    with pytest.raises(DataError, match="download interval 1m"):
        ingest_file(path)


def test_a_truncated_bybit_trades_gzip_is_a_data_error(tmp_path, archive_files):
    data = archive_files["trading/BTCUSDT/BTCUSDT2024-08-08.csv.gz"]
    path = _put(tmp_path, "trading/BTCUSDT/BTCUSDT2024-08-09.csv.gz", data[: len(data) // 2])
    with pytest.raises(DataError, match="BTCUSDT2024-08-09.csv.gz"):
        ingest_file(path)
    assert gzip.decompress(data)  # the whole file is fine


def test_spot_trades_without_header_with_is_best_match_in_microseconds_equal_the_futures_file(tmp_path):
    src = (SAMPLES / "trades" / "BTCUSDT-trades-2024-08-08.csv").read_text().splitlines()[1:]
    rows = []
    for line in src:  # Binance spot layout: no header, a 7th column, times in us (from 2025 on)
        f = line.split(",")
        rows.append(",".join([*f[:4], str(int(f[4]) * 1000), f[5], "true"]))
    path = _put(tmp_path, "data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2024-08-08.zip",
                zip_bytes("BTCUSDT-trades-2024-08-08.csv", ("\n".join(rows) + "\n").encode()))
    got = ingest_file(path)
    assert got.market == "spot"
    want = _trades_bars()
    assert got.bars.sort("ts").select(*TRADE_BAR, "n_trades").equals(want.select(*TRADE_BAR, "n_trades"))
