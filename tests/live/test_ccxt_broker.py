from __future__ import annotations

import pytest

from quantnb.errors import ConfigError, OperationalError, RateLimitError, TemporaryError
from quantnb.live._ccxt_broker import CcxtBroker
from quantnb.live._emergency import EmergencyProtocol, EmergencyReport


def _broker(server, **kw) -> CcxtBroker:
    b = CcxtBroker("BTCUSDT", "testnet", base_url=server.base_url, **kw)
    b.connect()
    return b


def test_market_order_round_trip_buy_then_reduce_only_sell(server, fake_keys):
    broker = _broker(server)
    assert broker.symbol == "BTC/USDT:USDT"
    assert (broker.rules.qty_step, broker.rules.min_qty, broker.rules.min_notional_usd) == (0.001, 0.001, 100.0)

    buy = broker.market_order("buy", 0.01, client_order_id="qnb-test-1")
    assert (buy.side, buy.qty, buy.price_usd, buy.status) == ("buy", 0.01, 46_000.0, "FILLED")
    assert buy.fee_usd == pytest.approx(0.01 * 46_000 * 5e-4)
    assert buy.client_order_id == "qnb-test-1"
    acct = broker.account()
    assert acct.position_qty == pytest.approx(0.01) and acct.entry_price == pytest.approx(46_000.0)

    server.set_price("BTCUSDT", 46_500.0)
    acct = broker.account()
    assert acct.equity_usd == pytest.approx(10_000 - buy.fee_usd + 0.01 * 500)
    sell = broker.market_order("sell", 0.01, reduce_only=True)
    assert sell.reduce_only and sell.price_usd == 46_500.0
    assert server.position_amt() == 0.0
    assert broker.account().balance_usd == pytest.approx(10_000 + 5.0 - buy.fee_usd - sell.fee_usd)
    sent = [p for m, path, p in server.requests if m == "POST" and path == "/fapi/v1/order"]
    assert [p.get("reduceOnly") for p in sent] == [None, "true"]
    assert all(p["type"] == "MARKET" for p in sent)


def test_close_all_cancels_resting_orders_and_flattens_reduce_only(server, fake_keys, fast_retry, tmp_path):
    retry, _ = fast_retry
    broker = _broker(server)
    broker.market_order("sell", 0.02)
    broker.exchange.create_order(broker.symbol, "limit", "buy", 0.01, 40_000.0)
    assert broker.positions() == {"BTC/USDT:USDT": pytest.approx(-0.02)}

    proto = EmergencyProtocol(broker, tmp_path, "x", retry, sleep=lambda s: None)
    rep = EmergencyReport("critical_error", "test", 10_000.0, 10_000.0)
    assert broker.cancel_all() == 1
    assert proto.flatten(rep) is True
    assert server.position_amt() == 0.0
    assert rep.positions_closed == {"BTC/USDT:USDT": pytest.approx(-0.02)}
    assert broker.exchange.fetch_open_orders(broker.symbol) == []
    last = [p for m, path, p in server.requests if m == "POST" and path == "/fapi/v1/order"][-1]
    assert (last["side"], last["quantity"], last["reduceOnly"]) == ("BUY", "0.02", "true")


@pytest.mark.parametrize("status,retry_after_s,expected_wait_s", [(429, 3, 3.0), (418, 2, 2.0), (503, None, 1.0)])
def test_temporary_error_is_retried_then_succeeds(server, fake_keys, fast_retry, status, retry_after_s,
                                                  expected_wait_s):
    retry, sleep = fast_retry
    broker = _broker(server)
    server.inject_fault("status", "/fapi/v1/order", status=status, retry_after_s=retry_after_s)
    fill = retry.call(broker.market_order, "buy", 0.01, client_order_id="qnb-retry-1")
    assert fill.qty == 0.01 and server.position_amt() == pytest.approx(0.01)
    assert sleep.calls == [expected_wait_s]  # one retry, waiting what the venue asked (or delay_s)


def test_order_lost_in_a_dropped_connection_is_not_sent_twice(server, fake_keys, fast_retry):
    retry, sleep = fast_retry
    broker = _broker(server)
    server.inject_fault("drop", "/fapi/v1/order", after_processing=True)  # venue fills, reply lost
    fill = retry.call(broker.market_order, "buy", 0.01, client_order_id="qnb-idem-1")
    assert fill.qty == 0.01 and fill.client_order_id == "qnb-idem-1"
    assert server.position_amt() == pytest.approx(0.01)  # one fill, not two
    assert len(sleep.calls) == 1


def test_retries_exhausted_reraise_the_temporary_error(server, fake_keys, fast_retry):
    retry, sleep = fast_retry
    broker = _broker(server)
    server.inject_fault("status", "/fapi/v3/account", status=502, count=10)
    with pytest.raises(TemporaryError) as info:
        retry.call(broker.account)
    assert len(sleep.calls) == 3  # 3 retries after the first attempt
    assert sum(1 for _, p, _ in server.requests if p == "/fapi/v3/account") >= 4
    assert "?" not in str(info.value).replace("?<query removed>", "")


def test_timeout_and_ban_translate_to_retryable_errors(server, fake_keys):
    broker = _broker(server, timeout_s=0.2)
    server.inject_fault("timeout", "/fapi/v3/account", delay_s=1.0)
    with pytest.raises(TemporaryError, match="RequestTimeout"):
        broker.account()
    server.inject_fault("status", "/fapi/v3/account", status=418, retry_after_s=120)
    with pytest.raises(RateLimitError) as info:
        broker.account()
    assert info.value.retry_after_s == 120.0


def test_rejected_orders_are_operational_errors(server, fake_keys):
    broker = _broker(server)
    with pytest.raises(OperationalError, match="-2019"):  # Margin is insufficient
        broker.market_order("buy", 100.0)
    with pytest.raises(OperationalError, match="-4164"):  # below the minimum notional
        broker.market_order("buy", 0.001)
    with pytest.raises(OperationalError, match="-2022"):  # reduce-only with no position
        broker.market_order("sell", 0.01, reduce_only=True)


def test_rejected_keys_refuse_to_start_naming_the_variables(fake_keys):
    from quantnb.testing.binance_server import BinanceLoopbackServer

    with BinanceLoopbackServer(api_key="the-right-key-1234567890", api_secret="s" * 40) as srv:
        with pytest.raises(ConfigError, match="QUANTNB_BINANCE_TESTNET_API_KEY") as info:
            _broker(srv)
    assert fake_keys[0] not in str(info.value) and fake_keys[1] not in str(info.value)


def test_missing_keys_refused_before_any_connection(monkeypatch):
    monkeypatch.delenv("QUANTNB_BINANCE_API_KEY", raising=False)
    monkeypatch.delenv("QUANTNB_BINANCE_API_SECRET", raising=False)
    with pytest.raises(ConfigError, match="QUANTNB_BINANCE_API_KEY and QUANTNB_BINANCE_API_SECRET"):
        CcxtBroker("BTCUSDT", "live", base_url="http://127.0.0.1:9")


def test_signature_is_valid_hmac_sha256(fake_keys):
    from quantnb.testing.binance_server import BinanceLoopbackServer

    with BinanceLoopbackServer(api_key=fake_keys[0], api_secret=fake_keys[1]) as srv:
        broker = _broker(srv)  # the server checks every signature; a bad one is error -1022
        assert broker.market_order("buy", 0.01).qty == 0.01
