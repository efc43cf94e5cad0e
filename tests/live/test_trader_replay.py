from __future__ import annotations

import csv
import math

import pytest
from loguru import logger

from quantnb.agent import MARKET_FEATURES, FillModel
from quantnb.live import PaperBroker, ReplayProvider, RiskLimits, Trader
from quantnb.live._audit import REGISTRO_COLUMNS
from quantnb.live._ccxt_broker import CcxtBroker
from tests.live._helpers import WARMUP, WINDOW, PricedReplay, RecordingSleep, fixed_retry, make_agent, sample_bars


def _replay_trader(tmp_path, n_bars=50, **kw):
    bars = sample_bars(WARMUP + WINDOW - 2 + n_bars)
    provider = ReplayProvider(bars, history_bars=WARMUP + WINDOW - 2)
    broker = PaperBroker("BTC-PERP", 10_000.0, FillModel(fee_bps=5.0, slippage_bps=1.0))
    return Trader(make_agent(), provider, broker, RiskLimits(0.5, 1.0), tmp_path, **kw), provider, broker


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def test_replay_session_writes_one_registro_row_per_bar(tmp_path):
    steps = []
    trader, provider, broker = _replay_trader(tmp_path, on_step=steps.append)
    stats = trader.run()
    rows = _rows(stats.registro_path)
    assert tuple(rows[0]) == REGISTRO_COLUMNS
    assert len(rows) - 1 == stats.steps == 50 == len(steps)
    assert stats.stopped_by == "end_of_data" and stats.emergency is None
    assert [int(r[1]) for r in rows[1:]] == list(range(50))
    assert [float(r[3]) for r in rows[1:]] == [b.close for b in provider.bars[WARMUP + WINDOW - 2:]]
    assert stats.trades == broker.portfolio.n_trades > 0  # the momentum rule flips position often
    assert stats.fees_usd == pytest.approx(broker.portfolio.fees_paid_usd)
    traded = [r for r in rows[1:] if r[6]]
    assert len(traded) == stats.trades and all(float(r[9]) > 0 and float(r[8]) > 0 for r in traded)
    assert all(not r[6] and r[8] == "" for r in rows[1:] if r not in traded)
    assert float(rows[-1][12]) == pytest.approx(stats.end_equity_usd)
    assert stats.pnl_usd == pytest.approx(stats.end_equity_usd - 10_000.0)
    assert all(s.observation is not None and s.observation.shape == (WINDOW * len(MARKET_FEATURES) + 3,) for s in steps)
    assert stats.latency_p99_ms >= stats.latency_p50_ms > 0


def test_stop_request_ends_the_session_in_order_and_flattens(tmp_path):
    def on_step(info):
        if info.step == 9:
            trader.request_stop(flatten=True)

    trader, _, broker = _replay_trader(tmp_path, on_step=on_step, emergency_poll_interval_s=0.01)
    stats = trader.run()
    assert stats.stopped_by == "stop_request" and stats.steps == 10
    assert stats.flattened_on_stop is True and broker.positions() == {}
    rows = _rows(stats.registro_path)
    assert len(rows) - 1 == 10 + 1  # ten bars, then the closing fill of the orderly stop
    last = dict(zip(rows[0], rows[-1], strict=True))
    assert last["event"] == "stop_flatten" and float(last["qty"]) > 0 and float(last["position"]) == 0.0
    assert stats.trades == broker.portfolio.n_trades == sum(1 for r in rows[1:] if r[6])
    assert stats.fees_usd == pytest.approx(broker.portfolio.fees_paid_usd)
    assert stats.end_equity_usd == pytest.approx(float(last["equity_usd"]))


def test_max_steps_and_replay_speed(tmp_path):
    slept = RecordingSleep()
    bars = sample_bars(WARMUP + WINDOW + 10)
    provider = ReplayProvider(bars, history_bars=WARMUP + WINDOW - 2, speed=600.0, sleep=slept)
    broker = PaperBroker("BTC-PERP", 10_000.0, FillModel(5.0, 0.0))
    stats = Trader(make_agent(), provider, broker, RiskLimits(0.5, 1.0), tmp_path, max_steps=5).run()
    assert stats.stopped_by == "max_steps" and stats.steps == 5
    assert all(0 <= s <= 0.1 for s in slept.calls)  # 60 s bars at 600x: at most 0.1 s apart


def test_fake_keys_never_reach_any_file_or_log(server, fake_keys, tmp_path):
    key, secret = fake_keys
    log_path = tmp_path / "produccion.log"
    sink = logger.add(log_path, level="DEBUG", format="{time} {level} {name} {message}")
    try:
        bars = sample_bars(WARMUP + WINDOW + 12)

        def factor(step):
            if step == 4:  # the venue drops the connection, then answers 429 with Retry-After, until retries run out
                server.inject_fault("drop", "/fapi/v3/account")
                server.inject_fault("status", "/fapi/v3/account", status=429, retry_after_s=0.01, count=5)
            return 1.0

        trader = Trader(make_agent(), PricedReplay(bars, server, history_bars=WARMUP + WINDOW - 2, price_factor=factor),
                        CcxtBroker("BTCUSDT", "testnet", base_url=server.base_url), RiskLimits(0.5, 1.0), tmp_path,
                        retry=fixed_retry(0.01), emergency_poll_interval_s=0.01)
        stats = trader.run()
    finally:
        logger.remove(sink)
    assert stats.stopped_by == "emergency:connection" and stats.trades > 0
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.name.split("_")[0] for p in files} >= {"registro", "emergencias", "produccion.log"}
    text = "\n".join(p.read_text(errors="replace") for p in files)
    assert "NetworkError" in text or "RateLimitError" in text or "DDoSProtection" in text  # errors were logged
    assert key not in text and secret not in text
    assert "signature=" not in text.replace("signature=***", "")
    assert math.isfinite(stats.emergency.equity_usd)
