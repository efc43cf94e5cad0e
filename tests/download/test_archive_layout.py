"""Which archive files cover a date range (monthly for whole past months, daily for the rest, no day twice)."""

from __future__ import annotations

import datetime as dt

import pytest

from quantnb.data._archive import plan_files

D = dt.date
TODAY = D(2026, 12, 7)


def test_whole_past_months_are_monthly_files_and_the_rest_daily_with_no_day_twice():
    files = plan_files("binance", "usdm", "klines", ["btcusdt"], D(2024, 6, 29), D(2024, 9, 2), today=TODAY)
    paths = [f.path for f in files]
    assert paths[:2] == ["data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-06-29.zip",
                         "data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-06-30.zip"]
    assert paths[2:4] == ["data/futures/um/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-07.zip",
                          "data/futures/um/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-08.zip"]
    assert [f.period for f in files[4:]] == ["2024-09-01", "2024-09-02"]
    days: list[dt.date] = []
    for f in files:  # every day from start to end exactly once
        if len(f.period) == 7:
            y, m = map(int, f.period.split("-"))
            days += [D(y, m, d) for d in range(1, 32) if _valid(y, m, d)]
        else:
            days.append(D.fromisoformat(f.period))
    assert days == [D(2024, 6, 29) + dt.timedelta(n) for n in range((D(2024, 9, 2) - D(2024, 6, 29)).days + 1)]
    assert all(f.checksum for f in files)


def _valid(y, m, d):
    try:
        D(y, m, d)
    except ValueError:
        return False
    return True


def test_a_month_not_yet_over_comes_as_daily_files():
    files = plan_files("binance", "spot", "trades", ["ETHUSDT"], D(2026, 12, 1), D(2026, 12, 31), today=TODAY)
    assert len(files) == 31 and files[0].path == "data/spot/daily/trades/ETHUSDT/ETHUSDT-trades-2026-12-01.zip"


def test_funding_is_monthly_only_and_book_depth_daily_only():
    funding = plan_files("binance", "usdm", "fundingRate", ["BTCUSDT"], D(2024, 8, 8), D(2024, 9, 3), today=TODAY)
    assert [f.path for f in funding] == [
        "data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-08.zip",
        "data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-09.zip"]
    depth = plan_files("binance", "coinm", "bookDepth", ["BTCUSD_PERP"[:6]], D(2024, 8, 1), D(2024, 8, 31),
                       today=TODAY)
    assert len(depth) == 31 and depth[0].path.startswith("data/futures/cm/daily/bookDepth/BTCUSD/")


def test_bybit_layouts_are_daily_without_checksums():
    trades = plan_files("bybit", "linear", "trades", ["BTCUSDT"], D(2024, 8, 8), D(2024, 8, 9), today=TODAY)
    assert [f.path for f in trades] == ["trading/BTCUSDT/BTCUSDT2024-08-08.csv.gz",
                                        "trading/BTCUSDT/BTCUSDT2024-08-09.csv.gz"]
    assert not any(f.checksum for f in trades)
    spot = plan_files("bybit", "spot", "trades", ["BTCUSDT"], D(2024, 8, 8), D(2024, 8, 8), today=TODAY)
    assert spot[0].path == "spot/BTCUSDT/BTCUSDT_2024-08-08.csv.gz"
    book = plan_files("bybit", "linear", "orderbook", ["XRPUSDT"], D(2024, 12, 1), D(2024, 12, 1), today=TODAY)
    assert book[0].path == "orderbook/linear/XRPUSDT/2024-12-01_XRPUSDT_ob500.data.zip"


@pytest.mark.parametrize(("bad", "named"), [
    ({"venue": "binance", "market": "spot", "data_type": "fundingRate"}, "data_type='fundingRate'"),
    ({"venue": "bybit", "market": "usdm", "data_type": "trades"}, "market='usdm'"),
    ({"start": "2024-09-01", "end": "2024-08-01"}, "start=2024-09-01"),
    ({"symbols": ["BTC/USDT"]}, "BTC/USDT"),
    ({"interval": "7m"}, "interval='7m'"),
    ({"base_url": "ftp://example"}, "base_url='ftp://example'"),
])
def test_bad_parameters_are_refused_with_the_fix(bad, named):
    from quantnb.errors import ConfigError
    from quantnb.stages.download import DownloadParams

    with pytest.raises(ConfigError) as err:
        DownloadParams.parse(bad)
    assert named in str(err.value)
