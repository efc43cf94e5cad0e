"""One refused order is recorded and skipped; only repeated refusals run the emergency protocol."""

from __future__ import annotations

import csv

from quantnb.live import RiskLimits, Trader
from quantnb.live._ccxt_broker import CcxtBroker
from tests.live._helpers import WARMUP, WINDOW, ConstantPolicy, PricedReplay, fixed_retry, make_agent, sample_bars

ORDER = "/fapi/v1/order"


def _trader(server, out_dir, n_bars=8):
    bars = sample_bars(WARMUP + WINDOW + n_bars)
    provider = PricedReplay(bars, server, history_bars=WARMUP + WINDOW - 2)
    broker = CcxtBroker("BTC/USDT:USDT", "testnet", base_url=server.base_url)
    return Trader(make_agent(ConstantPolicy(0.5)), provider, broker, RiskLimits(0.5, 1.0), out_dir,
                  retry=fixed_retry(1.0), emergency_poll_interval_s=0.01, emergency_poll_timeout_s=2.0,
                  max_order_rejections=3)


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_one_margin_insufficient_rejection_is_a_registro_row_and_the_session_goes_on(server, fake_keys, tmp_path):
    server.inject_fault("status", ORDER, method="POST", status=400, count=1)  # -2019 Margin is insufficient
    stats = _trader(server, tmp_path).run()
    assert stats.stopped_by == "end_of_data" and stats.emergency is None, stats.stopped_by
    assert stats.orders_rejected == 1 and stats.emergencias_path is None
    rows = _rows(stats.registro_path)
    assert len(rows) == stats.steps == 10
    assert rows[0]["event"] == "order_rejected" and rows[0]["side"] == "" and float(rows[0]["position"]) == 0.0
    assert "-2019" in rows[0]["note"] and "Margin is insufficient" in rows[0]["note"] and "skipped" in rows[0]["note"]
    assert rows[1]["event"] == "bar" and rows[1]["side"] == "buy"  # the next bar's order goes through
    assert server.position_amt() > 0  # the session did not flatten


def test_repeated_rejections_run_the_emergency_protocol_at_the_stated_count(server, fake_keys, tmp_path):
    server.inject_fault("status", ORDER, method="POST", status=400, count=3)
    stats = _trader(server, tmp_path).run()
    assert stats.stopped_by == "emergency:order_rejected" and stats.orders_rejected == 3
    rows = _rows(stats.registro_path)
    assert [r["event"] for r in rows] == ["order_rejected"] * 3
    (emerg,) = _rows(stats.emergencias_path)
    assert emerg["cause"] == "order_rejected" and "3 orders in a row" in emerg["detail"]
    assert emerg["flat_confirmed"] == "True"
