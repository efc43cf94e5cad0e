from __future__ import annotations

import csv
import math

import polars as pl
import pytest

from quantnb.agent import FillModel
from quantnb.live import PaperBroker, ReplayProvider, RiskLimits, Trader
from tests.live._helpers import WARMUP, WINDOW, ConstantPolicy, make_agent, sample_bars

START = WARMUP + WINDOW - 2


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _run(tmp_path, bars, *, model=None, **kw):
    provider = ReplayProvider(bars, history_bars=START)
    broker = PaperBroker("BTC-PERP", 10_000.0, FillModel(fee_bps=5.0, slippage_bps=2.0))
    trader = Trader(make_agent(model), provider, broker, RiskLimits(0.5, 1.0), tmp_path,
                    emergency_poll_interval_s=0.01, emergency_poll_timeout_s=5.0, **kw)
    return trader.run(), broker


def _spoil(bars: pl.DataFrame, i: int, **values) -> pl.DataFrame:
    return bars.with_columns([pl.when(pl.int_range(pl.len()) == i).then(pl.lit(v, dtype=pl.Float64))
                              .otherwise(pl.col(c)).alias(c) for c, v in values.items()])


def test_one_bad_bar_is_not_acted_on_and_trading_resumes_after_a_fresh_warm_up(tmp_path, caplog_loguru):
    bars = _spoil(sample_bars(START + 2 * WARMUP + 20), START + 5, close=math.nan)
    stats, _ = _run(tmp_path, bars)
    rows = _rows(stats.registro_path)
    bad = rows[5]
    assert bad["event"] == "rejected" and "field close=nan" in bad["note"] and bad["side"] == ""
    assert any("bar 2022-01-01T00:06:00+00:00 field close=nan" in m for m in caplog_loguru)
    after = rows[6]  # the next candle follows a hole: the features restart and wait their warm-up
    assert after["gap_before"] == "1"
    warming = rows[6 : 6 + WARMUP - 1]
    assert all(r["note"] == "features warming up" and r["side"] == "" for r in warming)
    assert rows[6 + WARMUP]["action_raw"] != "" and stats.stopped_by == "end_of_data" and stats.bad_bars == 1


def test_repeated_bad_bars_trigger_the_emergency_and_paper_flattens_at_the_last_valid_price(tmp_path):
    bars = sample_bars(START + 30)
    for i, spoil in enumerate(({"close": math.nan}, {"open": -1.0}, {"high": math.inf})):
        bars = _spoil(bars, START + 10 + i, **spoil)
    stats, broker = _run(tmp_path, bars, model=ConstantPolicy(1.0), max_bad_bars=3)
    assert stats.stopped_by == "emergency:bad_data"
    rep = stats.emergency
    assert rep.flat_confirmed and broker.positions() == {} and "3 bad bars in a row" in rep.detail
    rows = _rows(stats.registro_path)
    assert [r["event"] for r in rows[-4:]] == ["rejected"] * 3 + ["emergency_close"]
    last_valid_close = bars["close"][START + 9]
    close = rows[-1]
    assert close["side"] == "sell" and float(close["position"]) == 0.0
    assert float(close["fill_price"]) == pytest.approx(last_valid_close * (1 - 2e-4))  # with the paper slippage
    assert stats.trades == broker.portfolio.n_trades


def test_a_time_gap_is_flagged_and_the_agent_waits_for_warm_features(tmp_path, caplog_loguru):
    full = sample_bars(START + WARMUP + 40)
    bars = pl.concat([full.slice(0, START + 10), full.slice(START + 15)])  # five minutes missing
    stats, _ = _run(tmp_path, bars)
    rows = _rows(stats.registro_path)
    gap_rows = [i for i, r in enumerate(rows) if r["gap_before"] == "1"]
    assert gap_rows == [10] and rows[10]["bar_ts"] == "2022-01-01T00:16:00+00:00"
    assert any("gap before bar 2022-01-01T00:16:00+00:00" in m for m in caplog_loguru)
    assert all(r["note"] == "features warming up" and r["action_raw"] == "" for r in rows[10 : 10 + WARMUP - 1])
    assert rows[10 + WARMUP]["action_raw"] != "" and stats.gaps == 1
