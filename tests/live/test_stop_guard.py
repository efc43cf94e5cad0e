"""SIGTERM while the venue hangs: the state is marked at once and the unconfirmed flatten recorded before the kill."""

from __future__ import annotations

import csv
import json
import threading
import time

from quantnb.live import RiskLimits, Trader
from quantnb.live._ccxt_broker import CcxtBroker
from tests.live._helpers import WARMUP, WINDOW, ConstantPolicy, PricedReplay, fixed_retry, make_agent, sample_bars

KILL_GRACE_S = 30.0  # the runner kills the kernel this long after relaying the signal


def _state(out_dir):
    """The newest recorded trading state of the testnet session (journal line or snapshot)."""
    from quantnb.live import read_latest_state

    st = read_latest_state(out_dir, "testnet")
    return None if st is None else json.loads(st.to_json())


def test_stop_while_the_venue_hangs_is_on_record_well_before_the_kill(server, fake_keys, tmp_path):
    bars = sample_bars(WARMUP + WINDOW + 200)
    hang = threading.Event()

    def factor(step):
        if step == 3:  # from the 4th candle on every request hangs (the venue is unreachable)
            server.inject_fault("timeout", None, count=10_000, delay_s=60.0)
            hang.set()
        return 1.0

    provider = PricedReplay(bars, server, history_bars=WARMUP + WINDOW - 2, price_factor=factor)
    broker = CcxtBroker("BTC/USDT:USDT", "testnet", base_url=server.base_url, timeout_s=1.0)
    trader = Trader(make_agent(ConstantPolicy(0.5)), provider, broker, RiskLimits(0.5, 1.0), tmp_path,
                    retry=fixed_retry(0.01), mode="testnet", emergency_poll_interval_s=0.01,
                    emergency_poll_timeout_s=5.0, stop_timeout_s=2.0)
    result = {}
    runner = threading.Thread(target=lambda: result.setdefault("stats", trader.run()), daemon=True)
    runner.start()
    assert hang.wait(60)
    time.sleep(0.5)
    assert server.position_amt() > 0  # a position is open when the stop comes
    t_signal = time.monotonic()
    trader.request_stop(flatten=True)  # what the stage's SIGTERM handler does
    deadline = t_signal + 5.0
    marked = None
    while time.monotonic() < deadline and not (marked or {}).get("trading_state") == "reducing":
        marked = _state(tmp_path)
        time.sleep(0.05)
    t_marked = time.monotonic() - t_signal
    emerg = []
    while time.monotonic() < t_signal + 8.0 and not emerg:
        emerg = list(tmp_path.glob("emergencias_*.csv"))
        time.sleep(0.05)
    t_recorded = time.monotonic() - t_signal
    try:
        assert marked is not None and marked["trading_state"] == "reducing", marked
        assert t_marked < 1.0  # at once, not after the hanging venue call
        assert emerg, "the failed flatten is not on record"
        assert t_recorded < KILL_GRACE_S / 2
        (row,) = list(csv.DictReader(emerg[0].open(newline="")))
        assert row["cause"] == "stop_request" and row["flat_confirmed"] == "False"
        assert "not confirmed within stop_timeout_s=2 s" in row["detail"] and "position" in row["detail"]
        assert runner.is_alive()  # the main path is still stuck on the venue: the guard wrote the record
    finally:
        server.stop()  # wakes the hanging requests; the session ends
        runner.join(60)
    assert not runner.is_alive()
    assert result["stats"].stopped_by.startswith(("stop_request", "emergency:"))


def test_a_stop_whose_flatten_fails_is_recorded_in_emergencias(server, fake_keys, tmp_path):
    bars = sample_bars(WARMUP + WINDOW + 40)
    holder = {}

    def factor(step):
        if step == 3:  # a signal arrives; from now on the venue refuses every order with 503
            server.inject_fault("status", "/fapi/v1/order", method="POST", status=503, count=10_000)
            holder["trader"].request_stop(flatten=True)
        return 1.0

    provider = PricedReplay(bars, server, history_bars=WARMUP + WINDOW - 2, price_factor=factor)
    broker = CcxtBroker("BTC/USDT:USDT", "testnet", base_url=server.base_url)
    trader = holder["trader"] = Trader(make_agent(ConstantPolicy(0.5)), provider, broker, RiskLimits(0.5, 1.0),
                                       tmp_path, retry=fixed_retry(0.01), mode="testnet",
                                       emergency_poll_interval_s=0.01, emergency_poll_timeout_s=0.5)
    stats = trader.run()
    assert stats.stopped_by == "stop_request" and stats.flattened_on_stop is False
    assert server.position_amt() > 0  # the position is still open: that must be on record
    (row,) = list(csv.DictReader(stats.emergencias_path.open(newline="")))
    assert row["cause"] == "stop_request" and row["flat_confirmed"] == "False"
    assert "flatten NOT confirmed" in row["detail"] and "FAILED" in row["confirmations"]
    assert _state(tmp_path)["trading_state"] == "reducing"
