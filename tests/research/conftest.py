from __future__ import annotations

import polars as pl
import pytest

from tests.research._builders import read_btc_bars


@pytest.fixture(scope="session")
def btc_bars() -> pl.DataFrame:
    return read_btc_bars()
