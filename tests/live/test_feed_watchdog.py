"""A kline stream that stays open but sends nothing: WARNING, REST fallback, then the emergency protocol."""

from __future__ import annotations

import csv
import math

import polars as pl

from quantnb.agent import FillModel
from quantnb.live import ReplayProvider, RiskLimits, Trader
from quantnb.live._ccxt_broker import CcxtBroker
from quantnb.live._ccxt_feed import CcxtKlineProvider
from quantnb.live._guard import bar_iso
from quantnb.live._paper import PaperBroker
from quantnb.testing.ws_server import KlineStreamServer
from tests.live._helpers import WARMUP, WINDOW, ConstantPolicy, fixed_retry, make_agent, sample_bars

MINUTE_MS = 60_000


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_silent_stream_warns_falls_back_to_rest_then_runs_the_emergency(server, fake_keys, tmp_path, caplog_loguru):
    df = sample_bars(100)
    bars = [(int(t.timestamp() * 1000), o, h, lo, c, v) for t, o, h, lo, c, v in df.iter_rows()]
    server.set_klines("BTCUSDT", "1m", bars, MINUTE_MS)
    server.set_now_ms(bars[69][0] + MINUTE_MS)  # REST: history up to candle 69 is closed
    # the stream sends candles 70-79, then stays open and silent (no candle, no close)
    ws = KlineStreamServer(bars[70:80], updates_per_bar=1, on_closed=lambda t: server.set_now_ms(t + MINUTE_MS))
    ws.start()
    broker = CcxtBroker("BTC/USDT:USDT", "testnet", base_url=server.base_url)
    provider = CcxtKlineProvider(broker.exchange, "BTC/USDT:USDT", "1m", ws_url=ws.url,
                                 history_bars=WARMUP + WINDOW - 1, retry=fixed_retry(0.01))

    def on_step(info):
        if info.step == 9:  # the stream's last candle: REST now holds ten more closed candles (80-89)
            server.set_now_ms(bars[89][0] + MINUTE_MS)

    trader = Trader(make_agent(ConstantPolicy(0.5)), provider, broker, RiskLimits(0.5, 1.0), tmp_path,
                    retry=fixed_retry(0.01), on_step=on_step, poll_s=0.05, emergency_poll_interval_s=0.01,
                    emergency_poll_timeout_s=2.0, mode="testnet", stale_bar_s=0.3, stale_warn_bars=2,
                    stale_emergency_bars=5)
    try:
        stats = trader.run()
    finally:
        ws.stop()
    rows = [r for r in _rows(stats.registro_path) if r["event"] == "bar"]
    # 10 streamed, then 10 from the REST fallback, each once and in order
    assert [r["bar_ts"] for r in rows] == [bar_iso(b[0]) for b in bars[70:90]]
    assert stats.feed_fallbacks >= 2  # one that found candles, one (or more) that found none
    assert any("stale feed" in m and "REST" in m for m in caplog_loguru)
    assert stats.stopped_by == "emergency:stale_feed"
    (emerg,) = _rows(stats.emergencias_path)
    assert emerg["cause"] == "stale_feed" and emerg["flat_confirmed"] == "True" and server.position_amt() == 0.0


def test_a_feed_that_stops_giving_a_needed_feature_counts_as_stale(tmp_path, caplog_loguru):
    bars = sample_bars(WARMUP + WINDOW + 40)
    spread = [1.5 if i < WARMUP + 10 else math.nan for i in range(bars.height)]  # the book column dies at bar 10
    bars = bars.with_columns(pl.Series("spread_bps_mean", spread))
    provider = ReplayProvider(bars, history_bars=WARMUP + WINDOW - 2, speed=300.0)  # a 1-minute bar each 0.2 s
    broker = PaperBroker("BTC-PERP", 10_000.0, FillModel(4.0, 1.0))
    trader = Trader(make_agent(ConstantPolicy(0.5)), provider, broker, RiskLimits(0.5, 1.0), tmp_path,
                    poll_s=0.05, stale_bar_s=0.2, stale_warn_bars=2, stale_emergency_bars=4,
                    needed_columns=("spread_bps_mean",))
    stats = trader.run()
    assert stats.stopped_by == "emergency:stale_feed"
    assert 10 + 4 <= stats.steps < 40  # stopped soon after the column went missing, long before the data ended
    assert any("lacks ['spread_bps_mean']" in m for m in caplog_loguru)
    assert _rows(stats.emergencias_path)[0]["cause"] == "stale_feed"
