from __future__ import annotations

import csv
import json

import pytest

from quantnb.live import RiskLimits, Trader
from quantnb.live._ccxt_broker import CcxtBroker
from quantnb.live._state import PendingOrder, StateStore
from tests.live._helpers import WARMUP, WINDOW, ConstantPolicy, PricedReplay, fixed_retry, make_agent, sample_bars


def _trader(server, out_dir, bars, **kw):
    provider = PricedReplay(bars, server, history_bars=WARMUP + WINDOW - 2)
    broker = CcxtBroker("BTC/USDT:USDT", "testnet", base_url=server.base_url)
    return Trader(make_agent(ConstantPolicy(0.5)), provider, broker, RiskLimits(0.5, 1.0), out_dir,
                  retry=fixed_retry(0.01), mode="testnet", emergency_poll_interval_s=0.01, **kw)


def _venue_order(server, **params):
    with server.engine.lock:
        return server.engine.new_order({"symbol": "BTCUSDT", **params})


def test_testnet_restart_reconciles_position_balance_open_and_in_flight_orders(server, fake_keys, tmp_path,
                                                                               caplog_loguru):
    bars = sample_bars(WARMUP + WINDOW + 12)
    first = _trader(server, tmp_path, bars, max_steps=5).run()
    assert first.stopped_by == "max_steps" and server.position_amt() > 0
    store = StateStore(tmp_path, "testnet")
    state = store.load()
    recorded_pos, recorded_peak = state.account["position_qty"], state.peak_equity_usd

    # the session dies right after sending an order (intent recorded, fill not), and the account moves meanwhile
    in_flight = f"qnb-{state.order_tag}-{state.step}"
    never_sent = f"qnb-{state.order_tag}-{state.step}x"
    state.pending_orders = [PendingOrder(in_flight, "buy", 0.01, False, state.step, state.last_bar_ms, "bar"),
                            PendingOrder(never_sent, "sell", 0.02, True, state.step, state.last_bar_ms, "bar")]
    store.save(state)
    _venue_order(server, side="BUY", type="MARKET", quantity="0.010", newClientOrderId=in_flight)
    _venue_order(server, side="SELL", type="MARKET", quantity="0.005", newClientOrderId="manual-1")  # by hand
    _venue_order(server, side="BUY", type="LIMIT", quantity="0.010", price="30000", newClientOrderId="resting-1")
    with server.engine.lock:
        server.engine.wallet_usd += 25.0  # a transfer into the account

    second = _trader(server, tmp_path, bars, max_steps=3).run()
    assert second.resumed and second.registro_path == first.registro_path and second.steps == 3
    recon = {r["item"]: r for r in csv.DictReader(open(second.reconciliation_path))}
    assert recon[f"order {in_flight}"]["venue"].startswith("filled buy 0.01")
    assert recon[f"order {never_sent}"]["venue"] == "missing"
    assert "resting-1" in recon["open orders"]["venue"] and not server.engine.open_orders("BTCUSDT")
    assert float(recon["position"]["recorded"]) == pytest.approx(recorded_pos + 0.01)
    assert float(recon["position"]["venue"]) == pytest.approx(recorded_pos + 0.01 - 0.005)
    assert "balance_usd" in recon
    warned = "\n".join(caplog_loguru)
    for text in (f"in-flight order {in_flight}", f"in-flight order {never_sent}", "resting on the venue",
                 "position differs", "balance differs"):
        assert text in warned, text

    rows = list(csv.DictReader(open(second.registro_path)))
    fill_rows = [r for r in rows if r["event"] == "reconcile_fill"]
    assert [r["client_order_id"] for r in fill_rows] == [in_flight] and fill_rows[0]["side"] == "buy"
    new_bars = [r for r in rows if r["event"] == "bar"][5:]
    assert len(new_bars) == 3 and all(float(r["peak_equity_usd"]) >= recorded_peak for r in new_bars)
    final = json.loads(store.path.read_text())
    assert final["pending_orders"] == [] and final["restarts"] == 1
