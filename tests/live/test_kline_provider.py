from __future__ import annotations

import socket
import time

import pytest

from quantnb.errors import TemporaryError
from quantnb.live import make_exchange
from quantnb.live._ccxt_feed import CcxtKlineProvider
from quantnb.testing.ws_server import KlineStreamServer
from tests.live._helpers import fixed_retry, sample_bars

MINUTE_MS = 60_000


def _real_bars(n: int) -> list[tuple]:
    df = sample_bars(n)
    return [(int(t.timestamp() * 1000), o, h, lo, c, v) for t, o, h, lo, c, v in df.iter_rows()]


def _collect(provider, n: int, timeout_s: float = 10.0):
    got, deadline = [], time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        bar = provider.next_bar(0.5)
        if bar is not None:
            got.append(bar)
    return got


@pytest.fixture
def stream_setup(server):
    """Real candles: the first 10 are history on REST, the next 30 are streamed; REST's clock follows the stream."""
    bars = _real_bars(40)
    server.set_klines("BTCUSDT", "1m", bars, MINUTE_MS)
    server.set_now_ms(bars[9][0] + MINUTE_MS)
    ws = KlineStreamServer(bars[10:], updates_per_bar=3, message_delay_s=0.005,
                           on_closed=lambda t: server.set_now_ms(t + MINUTE_MS))
    yield bars, ws
    ws.stop()


def _provider(server, ws, **kw):
    return CcxtKlineProvider(make_exchange("testnet", base_url=server.base_url), "BTC/USDT:USDT", "1m",
                             ws_url=ws.url, history_bars=10, retry=fixed_retry(0.01),
                             reconnect_initial_s=0.02, **kw)


def test_one_event_per_closed_candle(server, stream_setup):
    bars, ws = stream_setup
    ws.start()
    provider = _provider(server, ws)
    history = provider.warmup()
    got = _collect(provider, 30)
    provider.close()
    assert [b.open_time_ms for b in history] == [b[0] for b in bars[:10]]
    assert [b.open_time_ms for b in got] == [b[0] for b in bars[10:]]  # 3 in-progress updates per candle ignored
    assert all(b.source == "ws" for b in got) and provider.backfilled == 0
    assert [b.close for b in got] == [b[4] for b in bars[10:]]
    assert list(provider.window)[-1].open_time_ms == bars[-1][0] and len(provider.window) == 10


def test_reconnects_after_drop_and_fills_missed_candles_from_rest_without_duplicates(server, stream_setup):
    bars, ws = stream_setup
    ws.drop_after(5, skip_bars=3)  # dies after candle 15 closes; 16-18 close while disconnected
    ws.drop_after(15, mid_candle=True)  # dies inside candle 25; its close is never streamed
    ws.start()
    provider = _provider(server, ws)
    provider.warmup()
    got = _collect(provider, 30)
    assert provider.next_bar(0.3) is None  # nothing more, in particular no duplicate
    provider.close()
    opens = [b.open_time_ms for b in got]
    assert opens == [b[0] for b in bars[10:]]  # every candle exactly once, in order
    by_source = {b.open_time_ms: b.source for b in got}
    from_rest = {i for i in range(10, 40) if by_source[bars[i][0]] == "rest"}
    assert {16, 17, 18, 25} <= from_rest  # the missed ones; a candle closing during the gap fill may join them
    assert provider.duplicates_dropped == len(from_rest) - 4  # ... and its streamed copy is dropped
    assert ws.connections == 3 and provider.connections == 3
    assert [b.close for b in got] == [b[4] for b in bars[10:]]  # REST candles carry the same prices


def test_repeated_connection_failure_raises_temporary_error(server):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there
    provider = CcxtKlineProvider(make_exchange("testnet", base_url=server.base_url), "BTC/USDT:USDT", "1m",
                                 ws_url=f"ws://127.0.0.1:{port}/ws/btcusdt@kline_1m", history_bars=0,
                                 retry=fixed_retry(0.01), reconnect_initial_s=0.01,
                                 max_reconnect_failures=2)
    provider.warmup()
    with pytest.raises(TemporaryError, match="3 reconnection attempts failed"):
        for _ in range(50):
            provider.next_bar(0.2)
    provider.close()
