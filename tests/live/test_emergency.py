from __future__ import annotations

import csv

import pytest

from quantnb.errors import ConfigError
from quantnb.live import RiskLimits, Trader
from quantnb.live._ccxt_broker import CcxtBroker
from quantnb.live._emergency import check_not_halted, halt_marker_path
from tests.live._helpers import WARMUP, WINDOW, ConstantPolicy, PricedReplay, fixed_retry, make_agent, sample_bars


def _trader(server, out_dir, *, price_factor=lambda step: 1.0, max_drawdown_frac=0.2, n_bars=40):
    bars = sample_bars(WARMUP + WINDOW + n_bars)
    provider = PricedReplay(bars, server, history_bars=WARMUP + WINDOW - 2, price_factor=price_factor)
    broker = CcxtBroker("BTC/USDT:USDT", "testnet", base_url=server.base_url)
    retry = fixed_retry(1.0)
    return Trader(make_agent(ConstantPolicy(0.5)), provider, broker,
                  RiskLimits(max_drawdown_frac=max_drawdown_frac, max_position_frac=1.0), out_dir, retry=retry,
                  emergency_poll_interval_s=0.01, emergency_poll_timeout_s=2.0)


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_drawdown_breach_flattens_records_and_blocks_restart(server, fake_keys, tmp_path):
    out = tmp_path / "runs" / "train_x" / "produccion"
    # half the equity long, then the market falls 1 % per bar from step 5: drawdown > 2 % within a few bars
    trader = _trader(server, out, max_drawdown_frac=0.02,
                     price_factor=lambda step: 1.0 if step < 5 else 0.99 ** (step - 4))
    stats = trader.run()

    assert stats.stopped_by == "emergency:drawdown"
    rep = stats.emergency
    assert rep.flat_confirmed and server.position_amt() == 0.0
    assert rep.positions_closed["BTC/USDT:USDT"] > 0
    emerg = _rows(stats.emergencias_path)
    assert len(emerg) == 1 and emerg[0]["cause"] == "drawdown" and emerg[0]["flat_confirmed"] == "True"
    assert float(emerg[0]["drawdown_frac"]) >= 0.02
    assert float(emerg[0]["peak_equity_usd"]) > float(emerg[0]["equity_usd"])
    assert "order" in emerg[0]["confirmations"] and "FILLED" in emerg[0]["confirmations"]
    reg = _rows(stats.registro_path)
    bars = [r for r in reg if r["event"] == "bar"]
    assert len(bars) == stats.steps and float(bars[-1]["drawdown_frac"]) >= 0.02
    close = reg[-1]  # the emergency close is a registro row too, counted as a trade
    assert (close["event"], close["side"], float(close["position"])) == ("emergency_close", "sell", 0.0)
    assert close["client_order_id"].startswith("qnb-") and stats.trades == sum(1 for r in reg if r["side"])
    last_order = [p for m, path, p in server.requests if m == "POST" and path == "/fapi/v1/order"][-1]
    assert last_order["reduceOnly"] == "true" and last_order["side"] == "SELL"

    marker = halt_marker_path(out)
    assert marker.exists()
    n_requests = len(server.requests)
    with pytest.raises(ConfigError, match="HALTED_DRAWDOWN"):
        _trader(server, out).run()
    assert len(server.requests) == n_requests  # refused before any connection
    marker.unlink()  # a person reviewed the account
    check_not_halted(out)


def test_retries_exhausted_trigger_emergency_and_flatten(server, fake_keys, tmp_path, retry_waits):
    def factor(step):
        if step == 6:  # from the 7th candle on, the account endpoint answers 503 four times in a row
            server.inject_fault("status", "/fapi/v3/account", status=503, count=4)
        return 1.0

    trader = _trader(server, tmp_path, price_factor=factor)
    stats = trader.run()
    assert stats.stopped_by == "emergency:connection"
    assert stats.steps == 6
    assert retry_waits.calls[:3] == [1.0, 1.0, 1.0]
    assert stats.emergency.flat_confirmed and server.position_amt() == 0.0
    emerg = _rows(stats.emergencias_path)
    assert emerg[0]["cause"] == "connection"
    assert "fetch balance" in emerg[0]["detail"] and "Service Unavailable" in emerg[0]["detail"]
    assert not halt_marker_path(tmp_path).exists()  # other causes may restart
    check_not_halted(tmp_path)


def test_temporary_error_during_session_is_retried_and_trading_goes_on(server, fake_keys, tmp_path, retry_waits):
    def factor(step):
        if step == 3:
            server.inject_fault("status", "/fapi/v3/positionRisk", status=429, retry_after_s=2)
        return 1.0 + 0.001 * step

    trader = _trader(server, tmp_path, price_factor=factor, n_bars=10)
    stats = trader.run()
    assert stats.stopped_by == "end_of_data" and stats.emergency is None
    assert 2.0 in retry_waits.calls
    assert stats.steps == 10 + 2 and len(_rows(stats.registro_path)) == stats.steps  # no close: flat at the end
