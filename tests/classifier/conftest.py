from __future__ import annotations

from collections.abc import Iterator

import polars as pl
import pytest
from loguru import logger

from quantnb.classifier import PreparedData, label_bars, prepare_datasets
from tests.classifier._builders import read_btc_bars


@pytest.fixture(scope="session")
def btc_bars() -> pl.DataFrame:
    return read_btc_bars()


@pytest.fixture(scope="session")
def real_data() -> PreparedData:
    """The first 2,500 real BTC-PERP bars, labelled 15 min ahead at +-0.2 %."""
    labelled = label_bars(read_btc_bars(2500), 15, -0.002, 0.002)
    return prepare_datasets(labelled, seq_len=16, train_frac=0.6, val_frac=0.2, lookahead_min=15)


@pytest.fixture
def log_messages() -> Iterator[list[str]]:
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(m.record["message"]), level="DEBUG")
    yield messages
    logger.remove(sink)
