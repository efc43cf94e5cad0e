"""Live keys go to Binance's own hosts only: endpoint overrides are refused before any request."""

from __future__ import annotations

import pytest

from quantnb.errors import ConfigError
from quantnb.live import make_exchange
from quantnb.live._ccxt_broker import CcxtBroker
from quantnb.stages.live import LiveParams
from quantnb.testing.binance_server import BinanceLoopbackServer

FOREIGN = "http://192.0.2.2:47555"  # TEST-NET-1: never contacted, the refusal comes first


@pytest.fixture
def live_keys(monkeypatch):
    monkeypatch.setenv("QUANTNB_BINANCE_API_KEY", "qnbLIVEKEY" + "k" * 32)
    monkeypatch.setenv("QUANTNB_BINANCE_API_SECRET", "qnbLIVESECRET" + "s" * 40)


@pytest.mark.parametrize("field", ["rest_base_url", "ws_url"])
def test_live_mode_refuses_any_endpoint_override_at_validation(field):
    for url in (FOREIGN, "http://127.0.0.1:9", "https://fapi.binance.com"):
        with pytest.raises(ValueError, match=f"{field}.*mode='live' takes no endpoint override"):
            LiveParams(train_id="agent_x", mode="live", confirm_live=True, **{field: url})


def test_live_broker_with_an_override_sends_nothing_not_even_to_a_loopback_relay(live_keys):
    with BinanceLoopbackServer() as relay:
        with pytest.raises(ConfigError, match="takes no endpoint override"):
            broker = CcxtBroker("BTCUSDT", "live", base_url=relay.base_url)
            broker.connect()  # on main this sends X-MBX-APIKEY and signed account requests to the relay
        with pytest.raises(ConfigError, match="takes no endpoint override"):
            make_exchange("live", base_url=relay.base_url)
        assert relay.requests == []


@pytest.mark.parametrize("url", [FOREIGN, "http://demo-fapi.binance.com", "ws://fstream.binancefuture.com/ws",
                                 "https://evil.example/fapi", "http://user:pw@127.0.0.1:9"])
def test_testnet_refuses_foreign_or_plain_text_hosts(url):
    field = "ws_url" if url.startswith("ws") else "rest_base_url"
    with pytest.raises(ValueError, match=field):
        LiveParams(train_id="agent_x", mode="testnet", **{field: url})
    if field == "rest_base_url":
        with pytest.raises(ConfigError, match="base_url"):
            make_exchange("testnet", base_url=url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://127.3.4.5:1", "http://localhost:9",
                                 "http://[::1]:9", "https://demo-fapi.binance.com", "wss://fstream.binancefuture.com/ws"])
def test_testnet_accepts_loopback_and_the_venue_testnet_over_tls(url):
    field = "ws_url" if url.startswith("ws") else "rest_base_url"
    assert getattr(LiveParams(train_id="agent_x", mode="testnet", **{field: url}), field) == url
