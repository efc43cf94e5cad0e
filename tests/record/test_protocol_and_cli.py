"""Keep-alive, trades and the `quantnb run record` command against the loopback servers."""

from __future__ import annotations

import json

import polars as pl
import pytest

from quantnb.data import ingest_file
from quantnb.record import read_events
from quantnb.testing.binance_stream_server import BinanceStreamServer, load_binance_capture
from quantnb.testing.bybit_ws_server import BybitStreamServer, load_bybit_frames, trade_frame
from tests.conftest import run_cli
from tests.record._helpers import config, record_until_done

SYMBOL = "BTCUSDT"


def test_bybit_pings_every_period_and_trades_are_recorded(tmp_path):
    book = load_bybit_frames()[:120]
    trades = [trade_frame(SYMBOL, 1786310818200 + i, f"{65114.2 + i % 3 * 0.1:.1f}", "0.004",
                          "Buy" if i % 2 else "Sell", 753843954913 + i, f"id-{i}") for i in range(40)]
    script = [f for pair in zip(book[:40], trades, strict=True) for f in pair] + book[40:]
    with BybitStreamServer(script, message_delay_s=0.01) as srv:
        rec = record_until_done(config(tmp_path, venue="bybit", market="linear", symbols=(SYMBOL,),
                                       channels=("book", "trades"), ws_url=srv.url(), ping_every_s=0.1), srv)
        pings = srv.pings
    assert srv.subscriptions == [[f"orderbook.200.{SYMBOL}", f"publicTrade.{SYMBOL}"]]
    assert pings >= 3 and rec.client.pongs == pings
    c = rec.counters.by_symbol[SYMBOL]
    assert (c["trades"], c["deltas"], c["snapshots"]) == (40, 119, 1)
    ev = read_events(tmp_path / "parquet")
    tr = ev.filter(pl.col("channel") == "trade").sort("seq")
    assert tr.height == 40 and tr["trade_id"].to_list() == [f"id-{i}" for i in range(40)]
    assert tr["side"].to_list()[:2] == ["sell", "buy"] and tr["size"].sum() == pytest.approx(0.16)
    files = sorted(p.name for p in (tmp_path / "raw").iterdir())
    assert files == [f"2026-08-09_{SYMBOL}_ob200.data", f"2026-08-09_{SYMBOL}_publicTrade.ndjson"]
    assert len((tmp_path / "raw" / files[1]).read_text().splitlines()) == 40


def test_binance_reconnect_with_missed_diffs_resyncs_and_etl_agrees(tmp_path):
    snap, frames = load_binance_capture(max_frames=1500)
    with BinanceStreamServer(snap, frames, message_delay_s=0.002) as srv:  # paced: synced before the drop
        srv.drop_after(700, skip=60)  # diffs published while the client is away
        rec = record_until_done(config(tmp_path, venue="binance", market="usdm", symbols=(SYMBOL,),
                                       channels=("book", "trades", "bbo"), ws_url=srv.ws_url,
                                       rest_url=srv.rest_url), srv)
    c = rec.counters.by_symbol[SYMBOL]
    assert (c["reconnects"], c["gaps"], c["resyncs"], srv.connections) == (1, 1, 1, 2), c
    b = rec.client.books[SYMBOL]
    assert b.synced and not b.book.is_crossed
    ing = ingest_file(next((tmp_path / "raw").glob("*.gz")))
    assert ing.quality.seq_gaps == 1 and ing.quality.resyncs == 1
    assert ing.book.levels("ask", 50) == b.book.levels("ask", 50)
    assert ing.book.levels("bid", 50) == b.book.levels("bid", 50)


@pytest.mark.slow
def test_quantnb_run_record_executes_the_notebook_then_resumes_with_another_stop(project):
    """`quantnb run record`, then `--resume` with another max_messages: the same run goes on in new shards."""
    with BybitStreamServer(message_delay_s=0.01) as srv:  # paced: the script's rest is left for the resumed session
        out = run_cli("run", "record", "-p", "ws_url", srv.url(), "-p", "max_messages", "200", "-p", "channels",
                      "[book]", "-p", "flush_every_s", "0.5", cwd=project, timeout=240)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        run = sorted((project / "runs").glob("record_*"))[-1]
        again = run_cli("run", "record", "--resume", run.name, "-p", "max_messages", "100", cwd=project, timeout=240)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "Passed unknown parameter" not in again.stdout + again.stderr
    rec = json.loads((run / "run.json").read_text())
    assert rec["status"] == "completed" and rec["results"]["messages"] == 100  # this session: a snapshot + 99
    shards = sorted((project / "data" / "recorded" / "parquet" / "bybit" / "linear").glob("*.parquet"))
    assert len(shards) >= 2 and len({p.name.split("_")[1] for p in shards}) == 2  # two processes' shards
    raw = project / "data" / "recorded" / "raw" / "bybit" / "linear" / f"2026-08-09_{SYMBOL}_ob200.data"
    assert len(raw.read_bytes().splitlines()) == 300  # 200 frames, then the resumed session's 100
    ing = ingest_file(raw)
    assert ing.quality.resyncs == 1 and not ing.book.is_crossed  # the new connection's snapshot rebuilt the book


def test_frames_arriving_after_max_messages_are_neither_recorded_nor_reported(tmp_path):
    """An unpaced stream: frames keep arriving while the recorder stops; run.json's count is max_messages."""
    from quantnb.record import Recorder

    with BybitStreamServer(load_bybit_frames()[:150]) as srv:  # unpaced: many frames per read
        rec = Recorder(config(tmp_path, venue="bybit", market="linear", symbols=(SYMBOL,), channels=("book",),
                              ws_url=srv.url(), max_messages=30))
        rec.run()
    rep = rec.report()
    assert rec.stopped_by == "max_messages" and rep["messages"] == 30 and rep["received"] >= 30
    raw = tmp_path / "raw" / f"2026-08-09_{SYMBOL}_ob200.data"
    assert len(raw.read_bytes().splitlines()) == 30
    assert read_events(tmp_path / "parquet")["update_id"].n_unique() == 30


def test_refused_reconnects_wait_the_policys_full_jitter_draws_and_are_counted():
    """Each wait is a full-jitter draw from [0, min(cap, base * 2**(n-1))] (Brooker, AWS 2015), from the policy."""
    import asyncio
    import dataclasses
    import random
    import re
    import socket

    import stamina
    from loguru import logger

    from quantnb.errors import TemporaryError
    from quantnb.record._clients import BybitClient, Counters

    logged: list[str] = []
    with socket.socket() as closed:  # bound, not listening: a loopback port that refuses connections
        closed.bind(("127.0.0.1", 0))
        counters = Counters([SYMBOL])
        client = BybitClient([SYMBOL], lambda *a, **k: None, counters, url=f"ws://127.0.0.1:{closed.getsockname()[1]}",
                             backoff_base_s=0.5, backoff_cap_s=3.0)
        client.reconnect = dataclasses.replace(client.reconnect, rng=random.Random(11))
        sink = logger.add(lambda m: logged.append(m.record["message"]), level="WARNING")
        try:
            with stamina.set_testing(True, attempts=6, cap=True):  # waits logged, not slept; 7 failures, then it stops
                with pytest.raises(TemporaryError, match="bybit connection lost or refused"):
                    asyncio.run(client.run())
        finally:
            logger.remove(sink)
    waits = [float(re.search(r"retrying in ([0-9.]+) s", m).group(1)) for m in logged if "retrying in" in m]
    draw = random.Random(11)
    expected = [draw.uniform(0.0, min(3.0, 0.5 * 2 ** (n - 1))) for n in range(1, 8)]
    assert waits == pytest.approx(expected, abs=1e-3) and max(waits) > 0.5  # grows with the failures
    assert counters.by_symbol[SYMBOL]["reconnects"] == 7


def test_a_silent_bybit_connection_is_closed_and_reconnected(tmp_path):
    """No frame and no pong for 3 ping periods: the client drops the connection and reconnects."""
    frames = load_bybit_frames()[:30]
    with BybitStreamServer(frames, message_delay_s=0.0) as srv:
        srv.pongs_enabled = False
        cfg = config(tmp_path, venue="bybit", market="linear", symbols=(SYMBOL,), channels=("book",),
                     ws_url=srv.url(), ping_every_s=0.2, duration_s=3.0)
        from quantnb.record import Recorder

        rec = Recorder(cfg)
        rec.run()
    assert srv.connections >= 2 and rec.counters.by_symbol[SYMBOL]["reconnects"] >= 1


def _self_signed(tmp_path):
    """A certificate for localhost/127.0.0.1 and its key, made by the openssl command line."""
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def test_wss_records_over_tls_and_an_untrusted_certificate_is_refused(tmp_path, monkeypatch):
    """The venues are wss:// only: TLS through picows's default context, certificates verified."""
    import ssl
    import threading
    import time

    from quantnb.record import Recorder
    from quantnb.testing.bybit_ws_server import SAMPLE_OB200

    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    from loguru import logger

    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    with BybitStreamServer(ssl_context=server_ctx) as srv:  # not trusted: the handshake must fail, nothing recorded
        assert srv.url().startswith("wss://localhost:")
        rec = Recorder(config(tmp_path / "untrusted", venue="bybit", market="linear", symbols=(SYMBOL,),
                              channels=("book",), ws_url=srv.url(), backoff_base_s=0.05))
        t = threading.Thread(target=rec.run, daemon=True)
        t.start()
        deadline = time.monotonic() + 60  # until a refused handshake was retried: no fixed sleep racing the thread
        while time.monotonic() < deadline and not (rec.counters.total("reconnects") >= 1 and any(
                "CERTIFICATE_VERIFY_FAILED" in w for w in warnings)):
            time.sleep(0.05)
        rec.request_stop()
        t.join(30)
        assert not t.is_alive(), "a stop request during the reconnect loop was lost"
        assert rec.messages == 0 and srv.subscriptions == [] and rec.counters.total("reconnects") >= 1
    logger.remove(sink)
    assert any("CERTIFICATE_VERIFY_FAILED" in w and "SSL_CERT_FILE" in w for w in warnings), warnings
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trusted, as a venue's certificate is by the system's CAs
    with BybitStreamServer(ssl_context=server_ctx) as srv:
        rec = record_until_done(config(tmp_path / "trusted", venue="bybit", market="linear", symbols=(SYMBOL,),
                                       channels=("book",), ws_url=srv.url()), srv)
    assert rec.messages == 414 and rec.counters.by_symbol[SYMBOL]["gaps"] == 0
    raw = tmp_path / "trusted" / "raw" / f"2026-08-09_{SYMBOL}_ob200.data"
    assert raw.read_bytes() == SAMPLE_OB200.read_bytes()
