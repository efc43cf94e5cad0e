from __future__ import annotations

import secrets

import pytest
import stamina

from quantnb.testing.binance_server import BinanceLoopbackServer
from tests.live._helpers import RetryWaits, fixed_retry


@pytest.fixture(autouse=True)
def no_retry_sleep():
    """stamina's test mode: retries happen (attempts kept) but nothing sleeps; the logged waits stay."""
    with stamina.set_testing(True, attempts=1000, cap=True):
        yield


@pytest.fixture
def retry_waits():
    waits = RetryWaits()
    yield waits
    waits.close()


@pytest.fixture
def server():
    srv = BinanceLoopbackServer(balance_usd=10_000.0, prices={"BTCUSDT": 46_000.0}).start()
    yield srv
    srv.stop()


@pytest.fixture
def fake_keys(monkeypatch):
    key, secret = "qnbKEY" + secrets.token_hex(16), "qnbSECRET" + secrets.token_hex(24)
    monkeypatch.setenv("QUANTNB_BINANCE_TESTNET_API_KEY", key)
    monkeypatch.setenv("QUANTNB_BINANCE_TESTNET_API_SECRET", secret)
    return key, secret


@pytest.fixture
def fast_retry(retry_waits):
    return fixed_retry(1.0), retry_waits


@pytest.fixture
def caplog_loguru():
    """Messages logged at WARNING or above while the test runs."""
    from loguru import logger

    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(str(m)), level="WARNING", format="{level} {message}")
    yield messages
    logger.remove(sink)
