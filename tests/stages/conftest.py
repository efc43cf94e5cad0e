from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from quantnb.classifier import label_bars, label_suffix
from tests.conftest import SAMPLES, make_project

LOOKAHEAD_MIN, SHORT, LONG = 30, -0.002, 0.002


def write_labelled_month_slice(root: Path, n_days: int = 3) -> str:
    """Label the first days of the real BTC-PERP month into <root>/data/labelled/<suffix>/, one file per day."""
    csv = SAMPLES / "ohlcv" / "BTC-PERP_20211231_20220201_1m.csv"
    bars = (pl.read_csv(csv, n_rows=1440 * n_days + 59)
            .with_columns(pl.col("timestamp").str.to_datetime(time_zone="UTC").dt.cast_time_unit("us").alias("ts"))
            .drop("timestamp").with_columns(pl.lit(False).alias("gap_before")))
    labelled = label_bars(bars, LOOKAHEAD_MIN, SHORT, LONG)
    suffix = label_suffix(LOOKAHEAD_MIN, SHORT, LONG)
    out = root / "data" / "labelled" / suffix
    out.mkdir(parents=True)
    for (day,), frame in labelled.group_by(pl.col("ts").dt.date(), maintain_order=True):
        frame.write_parquet(out / f"{day}.parquet")
    (out / "labelling_config.json").write_text(json.dumps({"lookahead_min": LOOKAHEAD_MIN, "suffix": suffix}))
    return f"data/labelled/{suffix}"


@pytest.fixture
def labelled_project(tmp_path: Path) -> tuple[Path, str]:
    root = make_project(tmp_path / "proj")
    return root, write_labelled_month_slice(root)


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL server for the session (quantnb.testing.postgres); tests use their own study names."""
    from quantnb.testing.postgres import postgres_server

    with postgres_server() as server:
        yield server
