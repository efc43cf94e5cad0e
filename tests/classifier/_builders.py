from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

BTC_CSV = Path(__file__).resolve().parents[2] / "data" / "samples" / "ohlcv" / "BTC-PERP_20211231_20220201_1m.csv"
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def read_btc_bars(n_rows: int | None = None) -> pl.DataFrame:
    """The bundled BTC-PERP 1-minute bars with a UTC ``ts`` column, as the ETL would write them."""
    df = pl.read_csv(BTC_CSV, n_rows=n_rows)
    return df.with_columns(pl.col("timestamp").str.to_datetime(time_unit="us", time_zone="UTC").alias("ts")
                           ).drop("timestamp").select("ts", "open", "high", "low", "close", "volume")


def bars(closes: list[float], minutes: list[int] | None = None, **extra: list) -> pl.DataFrame:
    """Hand-built 1-minute bars: close path, minute offsets from T0 (default 0..n-1)."""
    minutes = list(range(len(closes))) if minutes is None else minutes
    ts = [T0 + dt.timedelta(minutes=m) for m in minutes]
    df = pl.DataFrame({"ts": pl.Series(ts, dtype=pl.Datetime("us", "UTC")),
                       "open": closes, "high": [c and c * 1.001 for c in closes],
                       "low": [c and c * 0.999 for c in closes],
                       "close": closes, "volume": [1000.0 + i for i in range(len(closes))]},
                      schema_overrides={"open": pl.Float64, "close": pl.Float64})
    return df.with_columns(**{k: pl.Series(v) for k, v in extra.items()}) if extra else df


