"""Bad frames, NaN prices and crossed books, silent streams, and the Binance snapshot path, against loopback servers."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from loguru import logger

from quantnb.data import ingest_file
from quantnb.record._binance_client import BinanceClient
from quantnb.record._clients import Counters
from quantnb.stages.record import RecordParams, run_record
from quantnb.testing.binance_stream_server import BinanceStreamServer, load_binance_capture
from quantnb.testing.bybit_ws_server import BybitStreamServer, load_bybit_frames, trade_frame
from tests.record._helpers import config, record_until_done

SYMBOL = "BTCUSDT"
TOPIC = f"orderbook.200.{SYMBOL}"


@pytest.fixture
def warnings():
    got: list[str] = []
    sink = logger.add(lambda m: got.append(m.record["message"]), level="WARNING")
    yield got
    logger.remove(sink)


def test_bybit_bad_frames_are_quarantined_counted_once_logged_and_the_book_resyncs(project):
    """A truncated frame (DecodeError) and an ill-typed one (ValidationError at $.ts) no longer end the recording."""
    frames = load_bybit_frames()
    truncated = frames[100][:90]
    ill_typed = re.sub(r'"ts":\d+', '"ts":"late"', frames[200], count=1)
    with BybitStreamServer(frames, message_delay_s=0.004) as srv:
        srv.inject_after(100, truncated)
        srv.inject_after(200, ill_typed)
        res = run_record(RecordParams(venue="bybit", market="linear", symbols=[SYMBOL], depth=200, channels=["book"],
                                      ws_url=srv.url(), sinks=["raw", "parquet"], duration_s=6.0, flush_every_s=0.3,
                                      project_dir=str(project), console_level=None))
        subs = list(srv.subscriptions)
    assert res.status == "completed"
    results = json.loads((project / "runs" / res.run_id / "run.json").read_text())["results"]
    c = results["per_symbol"][SYMBOL]
    assert results["bad_frames"] == 2 and c["bad_frames"] == 2
    assert c["deltas"] == 413 and c["resyncs"] == 2  # every good frame recorded; a new snapshot after each bad one
    assert subs.count([TOPIC]) == 3  # the first subscription, then a resubscription per bad frame
    q = [json.loads(x) for x in open(results["quarantine_file"])]
    assert [x["frame"] for x in q] == [truncated, ill_typed] and {x["connection"] for x in q} == {1}
    assert "DecodeError" in q[0]["reason"] and "$.ts" in q[1]["reason"]
    log = (project / "logs" / "record" / f"{res.run_id}.log").read_text()  # the session log
    assert log.count("bad frame on connection 1") == 1  # logged once per connection, with a prefix of the frame
    assert repr(truncated.encode()[:40])[2:-1] in log
    raw = res.raw_dir / f"2026-08-09_{SYMBOL}_ob200.data"
    lines = raw.read_text().splitlines()
    assert truncated not in lines and ill_typed not in lines and len(lines) == 414 + 2
    ing = ingest_file(raw)  # the raw file has no bad frame; the resync snapshots are in it
    assert ing.quality.resyncs == 2 and (ing.book.best_bid, ing.book.best_ask) == (65114.2, 65114.3)


def test_binance_bad_depth_frame_is_quarantined_and_the_book_resyncs_from_rest(tmp_path):
    snap, frames = load_binance_capture(max_frames=1500)
    depth = [i for i, f in enumerate(frames) if "depthUpdate" in f[:80]]
    bad = frames[depth[60]][:70]
    with BinanceStreamServer(snap, frames, message_delay_s=0.002) as srv:
        srv.inject_after(depth[60], bad)
        rec = record_until_done(config(tmp_path, venue="binance", market="usdm", symbols=(SYMBOL,),
                                       channels=("book", "trades", "bbo"), ws_url=srv.ws_url,
                                       rest_url=srv.rest_url), srv)
        rest = srv.rest_requests
    c = rec.counters.by_symbol[SYMBOL]
    assert c["bad_frames"] == 1 and rec.report()["bad_frames"] == 1 and rest >= 2
    assert [json.loads(x)["frame"] for x in open(rec.quarantine.path)] == [bad]
    b = rec.client.books[SYMBOL]
    assert b.synced and not b.book.is_crossed
    ing = ingest_file(next((tmp_path / "raw").glob("*.gz")))
    assert ing.book.levels("bid", 50) == b.book.levels("bid", 50)
    assert ing.book.levels("ask", 50) == b.book.levels("ask", 50)


def test_nan_prices_and_crossed_books_are_flagged_when_recorded(tmp_path, warnings):
    frames = [json.loads(f) for f in load_bybit_frames()[:60]]
    frames[20]["data"]["a"].append(["NaN", "1.5"])
    frames[30]["data"]["b"].append(["999999.9", "1"])  # a bid above every ask: crossed for frames 30..34
    frames[35]["data"]["b"].append(["999999.9", "0"])
    script = [json.dumps(f, separators=(",", ":")) for f in frames]
    with BybitStreamServer(script) as srv:
        rec = record_until_done(config(tmp_path, venue="bybit", market="linear", symbols=(SYMBOL,),
                                       channels=("book",), ws_url=srv.url()), srv)
    c = rec.counters.by_symbol[SYMBOL]
    assert (c["nan_prices"], c["crossed"]) == (1, 5)
    assert rec.report()["nan_prices"] == 1 and rec.report()["crossed"] == 5
    assert sum("NaN/inf price" in w for w in warnings) == 1
    assert sum("book crossed" in w for w in warnings) == 1  # once per connection, not once per frame


def test_bybit_data_silence_while_pongs_keep_coming_reconnects_and_resyncs(tmp_path, warnings):
    frames = load_bybit_frames()[:200]
    with BybitStreamServer(frames, message_delay_s=0.002) as srv:
        srv.stall_after(99)
        rec = record_until_done(config(tmp_path, venue="bybit", market="linear", symbols=(SYMBOL,),
                                       channels=("book",), ws_url=srv.url(), ping_every_s=0.1, stale_after_s=0.8,
                                       book_stale_after_s=None), srv, timeout_s=20)
        pings = srv.pings
    c = rec.counters.by_symbol[SYMBOL]
    assert srv.connections == 2 and c["stalls"] == 1 and c["reconnects"] == 1 and c["resyncs"] == 1
    assert pings >= 6 and rec.client.pongs >= 6  # the server answered all along
    assert any("no data frame for" in w and "still answers" in w for w in warnings)
    assert c["deltas"] == 199 and rec.client.books[SYMBOL].synced


def test_bybit_book_channel_silence_while_trades_flow_is_detected(tmp_path, warnings):
    book = load_bybit_frames()[:80]
    trades = [trade_frame(SYMBOL, 1786310818200 + i, "65114.2", "0.001", "Buy", 753843954913 + i, f"t{i}")
              for i in range(60)]
    script = book[:40] + trades + book[40:]
    with BybitStreamServer(script, message_delay_s=0.03) as srv:
        rec = record_until_done(config(tmp_path, venue="bybit", market="linear", symbols=(SYMBOL,),
                                       channels=("book", "trades"), ws_url=srv.url(), ping_every_s=0.2,
                                       stale_after_s=None, book_stale_after_s=0.6), srv, timeout_s=30)
    c = rec.counters.by_symbol[SYMBOL]
    assert c["stalls"] >= 1 and srv.connections >= 2
    # each stall closes the connection on purpose: a trade the server writes into that closing socket
    # is lost, as it would be on the venue; none is recorded twice
    assert 60 - c["stalls"] <= c["trades"] <= 60
    assert any("no book frame for BTCUSDT" in w for w in warnings)


def test_a_silent_binance_stream_is_detected_reconnected_and_resynced(tmp_path, warnings):
    snap, frames = load_binance_capture(max_frames=1200)
    with BinanceStreamServer(snap, frames, message_delay_s=0.002, ping_interval_s=None) as srv:
        srv.stall_after(500, skip=40)  # open, no frame, no ping, no close; 40 frames pass meanwhile
        rec = record_until_done(config(tmp_path, venue="binance", market="usdm", symbols=(SYMBOL,),
                                       channels=("book", "trades", "bbo"), ws_url=srv.ws_url, rest_url=srv.rest_url,
                                       stale_after_s=0.8), srv, timeout_s=20)
    c = rec.counters.by_symbol[SYMBOL]
    assert srv.connections == 2 and c["stalls"] == 1 and c["reconnects"] == 1
    assert c["gaps"] == 1 and c["resyncs"] == 1  # the diffs missed while silent: a new REST snapshot
    assert any("no data frame for" in w for w in warnings)
    b = rec.client.books[SYMBOL]
    assert b.synced
    ing = ingest_file(next((tmp_path / "raw").glob("*.gz")))
    assert ing.book.levels("bid", 50) == b.book.levels("bid", 50), (ing.quality, c, rec.report())


def test_binance_first_snapshot_task_waits_for_the_http_session():
    """A depth frame handled before the HTTP session exists must not crash its snapshot task."""
    _, frames = load_binance_capture(max_frames=50)
    first_depth = next(f for f in frames if "depthUpdate" in f[:80]).encode()

    async def main():
        client = BinanceClient([SYMBOL], lambda *a, **k: None, Counters([SYMBOL]), ws_url="ws://127.0.0.1:9",
                               rest_url="http://127.0.0.1:9")
        client._on_message(first_depth)
        await asyncio.sleep(0.3)
        failed = [t.exception() for t in client._tasks if t.done() and not t.cancelled()]
        for t in client._tasks:
            t.cancel()
        return failed, len(client._tasks)

    failed, n = asyncio.run(main())
    assert n == 1 and failed == []


def test_binance_resync_snapshot_that_never_arrives_is_retried_with_backoff(tmp_path, warnings):
    snap, frames = load_binance_capture(max_frames=1500)
    with BinanceStreamServer(snap, frames, message_delay_s=0.002) as srv:
        srv.hang_rest(2, delay_s=8.0)  # the first two snapshot requests get no reply
        rec = record_until_done(config(tmp_path, venue="binance", market="usdm", symbols=(SYMBOL,),
                                       channels=("book", "trades", "bbo"), ws_url=srv.ws_url, rest_url=srv.rest_url,
                                       snapshot_timeout_s=0.3), srv, timeout_s=30)
    b = rec.client.books[SYMBOL]
    assert b.synced and rec.counters.by_symbol[SYMBOL]["snapshots"] >= 1
    assert sum("GET /fapi/v1/depth BTCUSDT failed" in w for w in warnings) == 2
    ing = ingest_file(next((tmp_path / "raw").glob("*.gz")))
    assert ing.book.levels("ask", 50) == b.book.levels("ask", 50)
