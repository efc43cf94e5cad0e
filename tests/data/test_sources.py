from __future__ import annotations

import pytest

from quantnb.data._io import accepted_patterns, detect_source
from quantnb.errors import DataError
from tests.data._samples import BINANCE, BYBIT_BTC, BYBIT_XRP, OHLCV, TRADES


@pytest.mark.parametrize(
    ("path", "kind", "symbol"),
    [
        (BYBIT_BTC, "bybit_book", "BTCUSDT"),
        (BYBIT_XRP, "bybit_book", "XRPUSDT"),
        (BINANCE, "binance_usdm", "BTCUSDT"),
        (OHLCV, "ohlcv_csv", "BTC-PERP"),
        (TRADES, "trades_csv", "BTCUSDT"),
    ],
)
def test_detect_source_recognises_each_bundled_sample(path, kind, symbol):
    info = detect_source(path)
    assert (info.kind, info.symbol) == (kind, symbol)


def test_detect_source_lowercase_binance_capture_name_gives_uppercase_symbol():
    assert detect_source("btcusdt_20240808.gz").symbol == "BTCUSDT"


@pytest.mark.parametrize("name", ["notes.txt", "BTCUSDT.parquet", "2024-01-01_BTCUSDT.data", "BTCUSDT_2024.csv"])
def test_unknown_file_name_raises_data_error_listing_accepted_patterns(name):
    with pytest.raises(DataError) as err:
        detect_source(f"/raw/{name}")
    message = str(err.value)
    assert name in message
    for pattern in accepted_patterns():
        assert pattern in message
