from __future__ import annotations

import secrets

import pytest

from quantnb.live._retry import RetryPolicy
from quantnb.testing.binance_server import BinanceLoopbackServer
from tests.live._helpers import RecordingSleep


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
def fast_retry():
    sleep = RecordingSleep()
    return RetryPolicy(max_retries=3, delay_s=1.0, sleep=sleep), sleep
