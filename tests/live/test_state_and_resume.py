from __future__ import annotations

import csv
import json
import re

import pytest

from quantnb.agent import FillModel
from quantnb.live import PaperBroker, ReplayProvider, RiskLimits, Trader
from quantnb.live._state import StateStore, TradingState, state_path
from tests.live._helpers import WARMUP, WINDOW, make_agent, sample_bars

START = WARMUP + WINDOW - 2
VOLATILE = 14_000  # a stretch of the real month where the momentum rule loses a few percent


def _trader(out_dir, bars, *, max_drawdown_frac=0.5, **kw):
    provider = ReplayProvider(bars, history_bars=START)
    broker = PaperBroker("BTC-PERP", 10_000.0, FillModel(fee_bps=5.0, slippage_bps=1.0))
    trader = Trader(make_agent(), provider, broker, RiskLimits(max_drawdown_frac, 1.0), out_dir,
                    emergency_poll_interval_s=0.01, **kw)
    return trader, broker


def _content(path):
    """Registro rows without the wall-clock columns (timestamp, decision_latency_ms) and the session's order tag."""
    with open(path, newline="") as fh:
        return [{k: (re.sub(r"^qnb-[0-9a-f]+-", "qnb-*-", v) if k == "client_order_id" else v)
                 for k, v in r.items() if k not in ("timestamp", "decision_latency_ms")} for r in csv.DictReader(fh)]


def test_state_file_is_written_after_every_step_and_a_restart_continues_the_replay(tmp_path):
    bars = sample_bars(START + 60)
    ref, ref_broker = _trader(tmp_path / "ref", bars)
    ref_stats = ref.run()
    assert ref_stats.stopped_by == "end_of_data" and ref_stats.trades > 0

    out = tmp_path / "split"
    first, _ = _trader(out, bars, max_steps=23)
    s1 = first.run()
    state = json.loads(state_path(out, "replay").read_text())
    assert s1.stopped_by == "max_steps" and state["step"] == 23 and state["trading_state"] == "active"
    assert state["paper"]["n_trades"] > 0 and state["peak_equity_usd"] >= 10_000.0
    assert state["last_bar_ms"] == int(bars["ts"][START + 22].timestamp() * 1000) and not state["pending_orders"]
    with open(s1.registro_path, "a") as fh:  # a step killed after its row, before its state: cut back on restart
        fh.write("2026-01-01T00:00:00+00:00,23,half a ro")
    second, broker = _trader(out, bars)
    s2 = second.run()
    assert s2.resumed and s2.session_ts == s1.session_ts and s2.registro_path == s1.registro_path
    assert s2.steps == 60 - 23
    assert _content(s2.registro_path) == _content(ref_stats.registro_path)
    assert broker.snapshot() == ref_broker.snapshot()  # the paper account, to the last bit
    recon = list(csv.DictReader(open(s2.reconciliation_path)))
    assert recon[0]["item"] == "resume" and "step=23" in recon[0]["recorded"]
    assert json.loads(state_path(out, "replay").read_text())["completed"] is True


def test_restart_keeps_the_peak_equity_so_the_drawdown_guard_halts_at_the_same_bar(tmp_path):
    bars = sample_bars(START + 400, offset=VOLATILE)
    probe, _ = _trader(tmp_path / "probe", bars, max_drawdown_frac=0.9)
    rows = _content(probe.run().registro_path)
    dd = [float(r["drawdown_frac"]) for r in rows]
    worst = max(range(len(dd)), key=dd.__getitem__)
    assert dd[worst] > 0.004, "the stretch must lose money for this test"
    limit = dd[worst] * 0.999
    halt_step = next(i for i, d in enumerate(dd) if d >= limit)
    ref, _ = _trader(tmp_path / "ref", bars, max_drawdown_frac=limit)
    ref_stats = ref.run()
    assert ref_stats.stopped_by == "emergency:drawdown" and ref_stats.steps == halt_step + 1
    peak_step = max(range(halt_step), key=lambda i: float(rows[i]["equity_usd"]))
    split = max(peak_step + 1, halt_step - 3)  # after the peak, while the drawdown is near the limit

    out = tmp_path / "split"
    assert _trader(out, bars, max_drawdown_frac=limit, max_steps=split)[0].run().stopped_by == "max_steps"
    resumed = _trader(out, bars, max_drawdown_frac=limit)[0].run()
    assert resumed.stopped_by == "emergency:drawdown" and resumed.steps == halt_step + 1 - split
    bar_rows = [r for r in _content(resumed.registro_path) if r["event"] == "bar"]
    assert bar_rows == [r for r in _content(ref_stats.registro_path) if r["event"] == "bar"]
    assert bar_rows[-1]["bar_ts"] == rows[halt_step]["bar_ts"]
    assert StateStore(out, "replay").load().trading_state is TradingState.HALTED


def test_fresh_start_is_deliberate_and_logged(tmp_path, caplog_loguru):
    bars = sample_bars(START + 20)
    _trader(tmp_path, bars, max_steps=5)[0].run()
    stats = _trader(tmp_path, bars, fresh_start=True)[0].run()
    assert not stats.resumed and stats.steps == 20
    assert any("fresh_start=True" in m for m in caplog_loguru)
    assert list(tmp_path.glob("state_replay.*.json"))  # the set-aside state is kept


def test_an_unreadable_state_file_refuses_to_start_naming_the_file(tmp_path):
    from quantnb.errors import ConfigError

    state_path(tmp_path, "replay").write_text("{not json")
    with pytest.raises(ConfigError, match="state_replay.json.*fresh_start=True"):
        _trader(tmp_path, sample_bars(START + 5))[0].run()


def test_state_store_replaces_atomically_leaves_no_stray_files_and_archives_the_content(tmp_path):
    from quantnb.live._state import PendingOrder, TraderState

    store = StateStore(tmp_path, "replay")
    state = TraderState(mode="replay", session_ts="s", order_tag="t", peak_equity_usd=123.5)
    for step in range(5):
        state.step = step
        state.pending_orders = [PendingOrder(f"qnb-t-{step}", "buy", 0.1, False, step, 0)]
        store.save(state)
    assert store.load().step == 4 and store.load().pending_orders[0].client_order_id == "qnb-t-4"
    assert len(list(tmp_path.glob(".state_replay.*.json"))) == 1  # the previous data files are gone
    (tmp_path / ".state_replay.999.1.json").write_text("left by a killed writer")
    StateStore(tmp_path, "replay")
    assert len(list(tmp_path.glob(".state_replay.*.json"))) == 1
    archived = store.archive("test")
    assert archived is not None and not archived.is_symlink() and json.loads(archived.read_text())["step"] == 4
    assert store.load() is None and not list(tmp_path.glob(".state_replay.*.json"))
    durable = StateStore(tmp_path, "testnet")  # testnet/live: temporary file, fsync, os.replace
    assert durable.fsync and not store.fsync
    durable.save(TraderState(mode="testnet", session_ts="s", order_tag="t"))
    assert not durable.path.is_symlink() and durable.load().mode == "testnet"
