"""Paths of the bundled real samples and a per-session cache of their ingestion."""

from __future__ import annotations

from pathlib import Path

from quantnb.data import ingest_file
from quantnb.data._ingest import FileIngest

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"
BYBIT_BTC = SAMPLES / "bybit" / "2026-08-09_BTCUSDT_ob200.data"
BYBIT_XRP = SAMPLES / "bybit" / "2024-12-01_XRPUSDT_ob500.data.zip"
BINANCE = SAMPLES / "binance_usdm" / "BTCUSDT_20240808.gz"
OHLCV = SAMPLES / "ohlcv" / "BTC-PERP_20211231_20220201_1m.csv"
TRADES = SAMPLES / "trades" / "BTCUSDT-trades-2024-08-08.csv"

_cache: dict[Path, FileIngest] = {}


def ingested(path: Path) -> FileIngest:
    """Ingest a real sample once per test session (crossed books counted, not raised, to check the count)."""
    if path not in _cache:
        _cache[path] = ingest_file(path, on_crossed="skip")
    return _cache[path]
