"""The recorder against loopback Bybit v5 / Binance USD-M servers replaying the real samples."""

from __future__ import annotations

import json
import math

import chdb.session
import polars as pl
import pytest

from quantnb.data import ingest_file, merge_parts
from quantnb.record import read_events
from quantnb.record._clickhouse import ClickHouseSink
from quantnb.record._events import BINANCE_BBO, BINANCE_DEPTH, BINANCE_TRADE, BYBIT_BOOK, events_frame
from quantnb.record._sinks import ParquetSink, repair_raw_file
from quantnb.stages.record import RecordParams, run_record
from quantnb.testing.binance_stream_server import BinanceStreamServer, load_binance_capture
from quantnb.testing.bybit_ws_server import SAMPLE_OB200, BybitStreamServer, load_bybit_frames
from tests.record._helpers import config, record_until_done

SYMBOL = "BTCUSDT"
N_FRAMES = 414  # the sample: 1 snapshot + 413 deltas
NO_TIME = ["recv_ns", "shard"]


def _etl_bars(path):
    merged = merge_parts([ingest_file(path).bars])
    return pl.concat([merged[k] for k in sorted(merged)])


def test_bybit_stage_all_sinks_then_etl_reproduces_the_sample(project, capsys):
    with BybitStreamServer() as srv:
        params = RecordParams(venue="bybit", market="linear", symbols=[SYMBOL], depth=200, channels=["book"],
                              ws_url=srv.url("linear"), sinks=["raw", "parquet", "clickhouse"],
                              max_messages=N_FRAMES, flush_every_s=0.3, progress_every_s=0.3,
                              project_dir=str(project), console_level=None)
        res = run_record(params)
        sent = list(srv.sent)
    assert res.status == "completed"
    assert srv.subscriptions == [[f"orderbook.200.{SYMBOL}"]]
    # raw: the venue's own archive file, byte for byte the frames sent, read unchanged by the ETL
    raw = res.raw_dir / f"2026-08-09_{SYMBOL}_ob200.data"
    assert raw.read_bytes() == SAMPLE_OB200.read_bytes()
    ing = ingest_file(raw)
    assert (ing.book.best_bid, ing.book.best_ask) == (65114.2, 65114.3)
    assert _etl_bars(raw).equals(_etl_bars(SAMPLE_OB200))
    from quantnb.stages.etl import EtlParams, run_etl

    etl = run_etl(EtlParams(input_globs=["data/recorded/raw/**/*.data", "data/recorded/raw/**/*.gz"], n_workers=1,
                            output_dir="data/processed_rec", project_dir=str(project), console_level=None))
    assert etl.status == "completed" and not etl.quarantined
    assert pl.read_parquet(project / etl.outputs["path"][0]).equals(_etl_bars(SAMPLE_OB200))
    # parquet: exactly the events sent
    got = read_events(res.parquet_dir)
    want = events_frame(BYBIT_BOOK, [0] * len(sent), [s.encode() for s in sent], venue="bybit", market="linear")
    assert got.drop(NO_TIME).equals(want.drop(NO_TIME))
    assert got["recv_ns"].is_sorted() and got["recv_ns"].min() > 0
    # clickhouse: the same rows, once
    sess = chdb.session.Session(str(project / "data" / "clickhouse"))
    try:
        n = int(str(sess.query("SELECT count() FROM quantnb.book_events", "CSV")).strip())
        dup = int(str(sess.query("SELECT count() FROM (SELECT shard, recv_ns, update_id, side, price, count() c "
                                 "FROM quantnb.book_events GROUP BY ALL HAVING c > 1)", "CSV")).strip())
        bid = float(str(sess.query("SELECT sum(price * size) FROM quantnb.book_events WHERE side = 'bid'",
                                   "CSV")).strip())
    finally:
        sess.close()
    assert n == got.height and dup == 0
    assert math.isclose(bid, float((got.filter(pl.col("side") == "bid")["price"]
                                    * got.filter(pl.col("side") == "bid")["size"]).sum()), rel_tol=1e-12)
    # the notebook's summary says where each sink wrote and how to read it
    capsys.readouterr()
    table = res.summary()
    printed = capsys.readouterr().out
    assert f"{N_FRAMES} messages" in printed and "stopped by max_messages" in printed
    assert f"{got.height:,} events (quantnb.record.read_events" in printed
    assert f"clickhouse: view quantnb.book_events (table quantnb.book_events_frames): {n:,} events" in printed
    assert table.filter(pl.col("symbol") == SYMBOL)["deltas"].item() == N_FRAMES - 1
    # counters in run.json and the heartbeat
    rec = json.loads((project / "runs" / res.run_id / "run.json").read_text())
    c = rec["results"]["per_symbol"][SYMBOL]
    assert (c["snapshots"], c["deltas"], c["gaps"], c["reconnects"]) == (1, 413, 0, 0)
    assert rec["results"]["messages"] == N_FRAMES and rec["results"]["stopped_by"] == "max_messages"
    hb = json.loads((project / "logs" / "heartbeats" / f"{res.run_id}_heartbeat.json").read_text())
    assert hb["recorder"]["per_symbol"][SYMBOL]["deltas"] == 413
    log = (project / "logs" / "record" / f"{res.run_id}.log").read_text()
    for needle in ("bybit: connecting to", "subscribing to", "subscribe confirmed", "first snapshot",
                   "Final counters"):
        assert needle in log, needle


def test_bybit_gap_and_drop_resync_are_counted_and_live_bars_equal_etl_bars(tmp_path):
    with BybitStreamServer(message_delay_s=0.003) as srv:  # paced: the resubscription lands before the drop
        srv.gap_at(100)
        srv.drop_after(300)
        rec = record_until_done(config(tmp_path, venue="bybit", market="linear", symbols=(SYMBOL,),
                                       channels=("book",), ws_url=srv.url()), srv)
    c = rec.counters.by_symbol[SYMBOL]
    assert c["gaps"] == 1 and c["reconnects"] == 1 and c["resyncs"] == 2, c
    book = rec.client.books[SYMBOL]
    assert (book.book.best_bid, book.book.best_ask) == (65114.2, 65114.3)
    raw = tmp_path / "raw" / f"2026-08-09_{SYMBOL}_ob200.data"
    ing = ingest_file(raw)
    assert ing.quality.resyncs == 2 and ing.quality.seq_gaps == 1
    assert (ing.book.best_bid, ing.book.best_ask) == (65114.2, 65114.3)
    live = book.bars()
    assert live.height >= 1 and live["resyncs"].sum() == 2
    assert live.equals(_etl_bars(raw))


def test_binance_sync_gap_and_etl_parity(tmp_path):
    snap, frames = load_binance_capture(max_frames=4000)
    depth_idx = [i for i, f in enumerate(frames) if "depthUpdate" in f[:80]]
    # paced (0.5 ms a frame): the first REST snapshot lands before the gap on a loaded machine too
    with BinanceStreamServer(snap, frames, ping_interval_s=0.2, message_delay_s=0.0005) as srv:
        srv.gap_at(depth_idx[150])
        rec = record_until_done(config(tmp_path, venue="binance", market="usdm", symbols=(SYMBOL,),
                                       channels=("book", "trades", "bbo"), ws_url=srv.ws_url,
                                       rest_url=srv.rest_url), srv)
        rest = srv.rest_requests
    c = rec.counters.by_symbol[SYMBOL]
    assert c["gaps"] == 1 and c["resyncs"] >= 1 and rest >= 2, (c, rest)
    book = rec.client.books[SYMBOL]
    assert book.synced and not book.book.is_crossed
    raws = sorted((tmp_path / "raw").glob(f"{SYMBOL}_*.gz"))
    assert len(raws) == 1
    ing = ingest_file(raws[0])
    assert ing.quality.seq_gaps == 1
    assert ing.book.levels("bid", 20) == book.book.levels("bid", 20)
    assert book.bars().equals(_etl_bars(raws[0]))
    ev = read_events(tmp_path / "parquet")
    sent_trades = [f for f in srv.sent if '"e":"trade"' in f[:80]]
    assert ev.filter(pl.col("channel") == "trade").height == len(sent_trades) == c["trades"]
    kinds = {"depth": BINANCE_DEPTH, "trade": BINANCE_TRADE, "bbo": BINANCE_BBO}
    sent_depth = [f.encode() for f in srv.sent if "depthUpdate" in f[:80]]
    want = events_frame(kinds["depth"], [0] * len(sent_depth), sent_depth, venue="binance", market="usdm")
    got = ev.filter((pl.col("channel") == "book") & (pl.col("type") == "delta"))
    assert got.drop(NO_TIME).equals(want.drop(NO_TIME))


def test_clickhouse_failed_insert_is_listed_then_backfilled_once(tmp_path):
    frames = load_bybit_frames()[:50]
    pq = ParquetSink(tmp_path / "pq", "bybit", "linear", "t")
    for f in frames:
        pq.write(BYBIT_BOOK, SYMBOL, 1, 0, f.encode())
    path, rows, _ = pq.flush()
    moved = path.with_suffix(".hidden")
    path.rename(moved)  # the insert reads a file that is not there: a real failure
    ch = ClickHouseSink(None, tmp_path / "ch", retries=2, retry_wait_s=0.01)
    try:
        assert ch.insert_shard(path) is False and ch.backlog == [path.stem]
        moved.rename(path)
        assert ch.backfill(tmp_path / "pq") == [path.stem] and ch.backlog == []
        assert ch.backfill(tmp_path / "pq") == []  # already there: nothing inserted twice
        assert ch.insert_shard(path) is True
        assert ch._scalar("SELECT count() FROM quantnb.book_events") == rows
    finally:
        ch.close()


def test_torn_raw_files_are_cut_to_whole_lines_and_members(tmp_path):
    plain = tmp_path / "2026-08-09_BTCUSDT_ob200.data"
    plain.write_bytes(b'{"a":1}\n{"b":2}\n{"c":')
    assert repair_raw_file(plain) == 5 and plain.read_bytes() == b'{"a":1}\n{"b":2}\n'
    import gzip

    gz = tmp_path / "BTCUSDT_20261130.gz"
    whole = gzip.compress(b"1 {}\n2 {}\n")
    gz.write_bytes(whole + gzip.compress(b"3 {}\n" * 1000)[:-30])
    assert repair_raw_file(gz) > 0 and gz.read_bytes() == whole
    assert repair_raw_file(gz) == 0


@pytest.mark.parametrize("bad", [dict(venue="bybit", market="usdm"), dict(venue="binance", market="linear"),
                                 dict(depth=7), dict(sinks=["clickhouse"]), dict(channels=["bbo"])])
def test_params_refuse_inconsistent_values(bad):
    from quantnb.errors import ConfigError

    with pytest.raises((ConfigError, ValueError)):
        RecordParams.parse(bad)


def test_clickhouse_shard_in_table_is_not_inserted_again_by_a_new_sink(tmp_path):
    """A restarted sink learns the table's shards once and skips them; parquet shards carry no statistics."""
    import pyarrow.parquet as papq

    frames = load_bybit_frames()[:30]
    pq = ParquetSink(tmp_path / "pq", "bybit", "linear", "r")
    paths = []
    for _ in range(2):
        for f in frames:
            pq.write(BYBIT_BOOK, SYMBOL, 1, 0, f.encode())
        paths.append(pq.flush()[0])
    assert papq.ParquetFile(paths[0]).metadata.row_group(0).column(0).statistics is None
    ch = ClickHouseSink(None, tmp_path / "ch")
    try:
        assert ch.insert_shard(paths[0]) and ch.inserted == 1
        rows = ch._scalar("SELECT count() FROM quantnb.book_events")
    finally:
        ch.close()
    ch = ClickHouseSink(None, tmp_path / "ch")  # a restarted recorder's sink
    try:
        assert ch.insert_shard(paths[0]) and ch.inserted == 0  # known from the table: skipped
        assert ch.insert_shard(paths[1]) and ch.insert_shard(paths[1]) and ch.inserted == 1
        assert ch._scalar("SELECT count() FROM quantnb.book_events") == 2 * rows
    finally:
        ch.close()


def test_stored_frames_expand_to_exactly_the_events_of_one_row_per_level(tmp_path):
    """The stored layout (a row per frame, levels as lists) loses nothing: Bybit and Binance, empty deltas too."""
    import sys

    from quantnb.record._book import decode_bybit_book
    from quantnb.record._events import BookColumns, events_from_frames, frames_from_events

    texts = [f.encode() for f in load_bybit_frames()[:60]]
    empty = json.loads(texts[5])
    empty["data"]["b"], empty["data"]["a"], empty["data"]["u"] = [], [], empty["data"]["u"]
    texts[5] = json.dumps(empty, separators=(",", ":")).encode()  # a delta with no level: no event row
    recv = list(range(1, len(texts) + 1))
    want = events_frame(BYBIT_BOOK, recv, texts, venue="bybit", market="linear", shard="s")
    cols = BookColumns(BYBIT_BOOK)
    for r, t in zip(recv, texts, strict=True):
        cols.add(r, decode_bybit_book(t))
    assert sys.getrefcount(cols) == 2, "no reference cycle: a batch is freed when dropped, not at a GC pass"
    stored = cols.frame(venue="bybit", market="linear", shard="s")
    assert stored.height == len(texts) and stored["n_bids"][5] == 0 and stored["price"][5].len() == 0
    assert events_from_frames(stored).equals(want)
    # the text path (trades, bbo, snapshots, and any frame without a decoded form) stores the same rows
    assert frames_from_events(events_frame(BYBIT_BOOK, recv, texts, venue="bybit", market="linear", shard="s",
                                           frame_index=True)).equals(stored.filter(pl.col("price").list.len() > 0))
    # Binance: depth diffs through the client's decoded events, trades and bookTicker through the text path
    from quantnb.data._binance import DECODE_FRAME as _DECODE

    _, frames = load_binance_capture(max_frames=600)
    for kind, tag in ((BINANCE_DEPTH, "depthUpdate"), (BINANCE_TRADE, '"e":"trade"'), (BINANCE_BBO, "bookTicker")):
        sel = [f.encode() for f in frames if tag in f[:80]][:100]
        assert sel, tag
        r = list(range(len(sel)))
        want = events_frame(kind, r, sel, venue="binance", market="usdm", shard="s")
        if kind == BINANCE_DEPTH:
            c = BookColumns(kind)
            for i, t in zip(r, sel, strict=True):
                c.add(i, _DECODE(t).data)
            stored = c.frame(venue="binance", market="usdm", shard="s")
        else:
            stored = frames_from_events(events_frame(kind, r, sel, venue="binance", market="usdm", shard="s",
                                                     frame_index=True))
        assert events_from_frames(stored).equals(want), kind


def test_clickhouse_refuses_a_table_of_the_earlier_one_row_per_level_layout(tmp_path):
    from quantnb.errors import ConfigError

    sess = chdb.session.Session(str(tmp_path / "ch"))
    sess.query("CREATE DATABASE quantnb")
    sess.query("CREATE TABLE quantnb.book_events (recv_ns Int64, price Float64) ENGINE = MergeTree ORDER BY recv_ns")
    sess.close()
    with pytest.raises(ConfigError, match="quantnb.book_events is a MergeTree table.*clickhouse_table"):
        ClickHouseSink(None, tmp_path / "ch")
    ch = ClickHouseSink(None, tmp_path / "ch", table="quantnb.book_events2")
    ch.close()


def test_sinks_behind_the_stream_pause_reading_and_lose_nothing(tmp_path, monkeypatch):
    """Backpressure: a slow flush stops reading the socket (bounded memory); every frame still reaches Parquet."""
    import time as _time

    slow = ParquetSink.write_batch

    def write_slowly(self, batch):  # a slow disk: the shard is written once 2 batches wait behind it (the pause)
        deadline = _time.monotonic() + 10.0
        while self.pending < 2 * 20 and _time.monotonic() < deadline and len(srv.sent) < N_FRAMES:
            _time.sleep(0.01)
        return slow(self, batch)

    monkeypatch.setattr(ParquetSink, "write_batch", write_slowly)
    # paced (about 2 s for the sample): an unpaced burst can be read whole before the first flush starts
    with BybitStreamServer(message_delay_s=0.005) as srv:
        rec = record_until_done(config(tmp_path, venue="bybit", market="linear", symbols=(SYMBOL,), channels=("book",),
                                       ws_url=srv.url(), max_batch_frames=20, flush_every_s=5.0), srv)
        sent = list(srv.sent)
    assert rec.backpressure_pauses >= 1 and rec.report()["backpressure_pauses"] == rec.backpressure_pauses
    got = read_events(tmp_path / "parquet")
    want = events_frame(BYBIT_BOOK, [0] * len(sent), [s.encode() for s in sent], venue="bybit", market="linear")
    assert len(sent) == N_FRAMES and got.drop(NO_TIME).equals(want.drop(NO_TIME))


def test_a_failed_shard_write_keeps_its_frames_for_the_next_shard_in_order(tmp_path):
    """ParquetSink.restore: the frames of a shard that could not be written come first in the next one."""
    from quantnb.record._book import decode_bybit_book

    texts = [f.encode() for f in load_bybit_frames()[:80]]
    pq = ParquetSink(tmp_path / "pq", "bybit", "linear", "t")
    for i, t in enumerate(texts[:50]):
        pq.write(BYBIT_BOOK, SYMBOL, i + 1, 0, t, decode_bybit_book(t))
    blocker = tmp_path / "pq" / "t_000000.parquet"
    blocker.mkdir()
    (blocker / "x").write_text("a directory where the shard goes: its rename fails")
    batch = pq.detach()
    with pytest.raises(OSError):
        pq.write_batch(batch)
    for i, t in enumerate(texts[50:], start=50):  # frames arriving while the write failed
        pq.write(BYBIT_BOOK, SYMBOL, i + 1, 0, t, decode_bybit_book(t))
    pq.restore(batch)
    assert pq.pending == len(texts)
    import shutil

    shutil.rmtree(blocker)  # the disk problem is gone
    path, events, frames = pq.flush()
    assert path.name == "t_000001.parquet" and frames == len(texts)
    want = events_frame(BYBIT_BOOK, list(range(1, len(texts) + 1)), texts, venue="bybit", market="linear",
                        shard="t_000001")
    got = read_events(tmp_path / "pq")
    assert events == want.height and got.equals(want)
