"""The UTC day roll, the output-folder lock, a full disk, a locked or corrupted chDB folder, SQL names, close codes."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import time

import polars as pl
import pytest

from quantnb.data import ingest_file
from quantnb.errors import ConfigError, OperationalError
from quantnb.record import Recorder, RecorderConfig, read_events
from quantnb.record._binance_client import BinanceClient
from quantnb.record._clickhouse import ClickHouseSink
from quantnb.record._sinks import ParquetSink, RawSink
from quantnb.stages.record import RecordParams, run_record
from quantnb.testing.binance_stream_server import BinanceStreamServer, load_binance_capture
from quantnb.testing.bybit_ws_server import SAMPLE_OB200, BybitStreamServer, load_bybit_frames
from tests.conftest import REPO
from tests.record._helpers import config, record_until_done

SYMBOL = "BTCUSDT"
DAY_MS = 86_400_000


def _shift_ts(frame: str, shift_ms: int) -> str:
    return re.sub(r'"(c?ts)":(\d+)', lambda m: f'"{m.group(1)}":{int(m.group(2)) + shift_ms}', frame)


def test_bybit_day_roll_starts_the_new_days_file_with_the_live_book(tmp_path):
    frames = load_bybit_frames()
    t200 = json.loads(frames[200])["ts"]
    shift = (t200 // DAY_MS + 1) * DAY_MS - t200  # frame 200 is the first of the next UTC day
    script = [_shift_ts(f, shift) for f in frames]
    whole = tmp_path / "whole" / "2026-08-09_BTCUSDT_ob200.data"
    whole.parent.mkdir()
    whole.write_text("\n".join(script) + "\n")
    with BybitStreamServer(script) as srv:
        rec = record_until_done(config(tmp_path, venue="bybit", market="linear", symbols=(SYMBOL,),
                                       channels=("book",), ws_url=srv.url()), srv)
    day1, day2 = sorted((tmp_path / "raw").glob("*.data"))
    assert day1.read_text().splitlines() == script[:200]
    lines = day2.read_text().splitlines()
    assert lines[1:] == script[200:]
    first = json.loads(lines[0])
    assert first["type"] == "snapshot" and first["ts"] % DAY_MS == 0
    assert first["data"]["u"] == json.loads(script[199])["data"]["u"]
    ing2, ref = ingest_file(day2), ingest_file(whole)  # the second day's file stands alone
    assert ing2.quality.resyncs == 0 and ing2.book.levels("bid") == ref.book.levels("bid")
    assert ing2.book.levels("ask") == ref.book.levels("ask")
    assert ing2.book.levels("ask", 20) == rec.client.books[SYMBOL].book.levels("ask", 20)
    snaps = read_events(tmp_path / "parquet").filter(pl.col("type") == "snapshot")
    assert snaps["update_id"].unique().to_list() == [json.loads(script[0])["data"]["u"]]  # the roll line: raw only


def test_binance_day_roll_records_a_rest_snapshot_in_the_new_days_file(tmp_path, monkeypatch):
    snap, frames = load_binance_capture(max_frames=1500)
    midnight_ns = 1_924_992_000 * 10**9  # 2031-01-01T00:00:00Z
    offset = midnight_ns - time.time_ns() - 2 * 10**9  # the receive clock reaches midnight 2 s from now
    monkeypatch.setattr(BinanceClient, "clock_ns", staticmethod(lambda: time.time_ns() + offset), raising=False)
    with BinanceStreamServer(snap, frames, message_delay_s=0.003) as srv:
        rec = record_until_done(config(tmp_path, venue="binance", market="usdm", symbols=(SYMBOL,),
                                       channels=("book", "trades", "bbo"), ws_url=srv.ws_url,
                                       rest_url=srv.rest_url), srv)
    day1, day2 = sorted((tmp_path / "raw").glob("*.gz"))
    assert (day1.name, day2.name) == ("BTCUSDT_20301231.gz", "BTCUSDT_20310101.gz")
    ing2 = ingest_file(day2)
    b = rec.client.books[SYMBOL]
    assert ing2.quality.snapshots >= 1 and b.synced  # (a snapshot too old for the next diff is fetched again)
    assert ing2.book.best_bid < ing2.book.best_ask
    assert ing2.book.levels("bid", 50) == b.book.levels("bid", 50)
    assert ing2.book.levels("ask", 50) == b.book.levels("ask", 50)


def test_a_second_recorder_on_one_output_dir_is_refused_naming_the_first_pid(project):
    with BybitStreamServer(message_delay_s=0.02) as srv:
        params = dict(venue="bybit", market="linear", symbols=[SYMBOL], depth=200, channels=["book"],
                      ws_url=srv.url(), sinks=["raw", "parquet"], duration_s=60.0, flush_every_s=0.2,
                      project_dir=str(project), console_level=None)
        child = subprocess.Popen([sys.executable, "-m", "tests.record._child", json.dumps(params)], cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            raw = project / "data" / "recorded" / "raw" / "bybit" / "linear"
            deadline = time.monotonic() + 60
            while not list(raw.glob("*.data")) and time.monotonic() < deadline:
                assert child.poll() is None, child.stderr.read()[-2000:]
                time.sleep(0.05)
            with pytest.raises(ConfigError, match=rf"another recorder writes this folder \(pid {child.pid}"):
                run_record(RecordParams(**{**params, "duration_s": 2.0}))
        finally:
            child.terminate()
            child.wait(30)
    lines = (raw / f"2026-08-09_{SYMBOL}_ob200.data").read_text().splitlines()
    assert len(lines) == len(set(lines))  # one writer: no frame twice


class _FullDisk:
    """A write that fails with ENOSPC on chosen calls, after writing part of its data (a torn line)."""

    def __init__(self, fail_calls: set[int], always: bool = False):
        self.calls, self.fail_calls, self.always = 0, fail_calls, always

    def __call__(self, fd: int, data) -> int:
        self.calls += 1
        if self.always or self.calls in self.fail_calls:
            os.write(fd, bytes(data[: max(1, len(data) // 3)]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)


def test_disk_full_keeps_every_frame_once_and_the_run_says_so(project, monkeypatch):
    monkeypatch.setattr(RawSink, "_write", staticmethod(_FullDisk({2, 3})))  # two flushes fail mid-line
    writes = {"n": 0}
    real = pl.DataFrame.write_parquet

    def shard_write(self, *a, **k):  # the second shard hits a full disk after its rows were built
        writes["n"] += 1
        if writes["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *a, **k)

    monkeypatch.setattr(pl.DataFrame, "write_parquet", shard_write)
    with BybitStreamServer(message_delay_s=0.005) as srv:
        res = run_record(RecordParams(venue="bybit", market="linear", symbols=[SYMBOL], depth=200, channels=["book"],
                                      ws_url=srv.url(), sinks=["raw", "parquet"], max_messages=414,
                                      flush_every_s=0.2, project_dir=str(project), console_level=None))
        sent = list(srv.sent)
    assert res.status == "completed_with_errors"
    assert res.report["flush_failures"] >= 2 and res.report["unflushed_frames"] == 0
    raw = res.raw_dir / f"2026-08-09_{SYMBOL}_ob200.data"
    assert raw.read_bytes() == SAMPLE_OB200.read_bytes()  # no torn line, no blank line, no frame twice
    ev = read_events(res.parquet_dir)
    assert ev.select(pl.struct("update_id", "type").n_unique()).item() == len(sent)  # every frame once
    assert ev.filter(pl.col("type") == "delta")["update_id"].is_sorted()
    run = json.loads((project / "runs" / res.run_id / "run.json").read_text())
    assert run["status"] == "completed_with_errors" and "nothing lost" in (run.get("error") or "")


def test_a_full_disk_at_the_final_flush_fails_the_run(project, monkeypatch):
    monkeypatch.setattr(RawSink, "_write", staticmethod(_FullDisk(set(), always=True)))
    with BybitStreamServer(load_bybit_frames()[:50]) as srv:
        res = run_record(RecordParams(venue="bybit", market="linear", symbols=[SYMBOL], depth=200, channels=["book"],
                                      ws_url=srv.url(), sinks=["raw"], max_messages=50, flush_every_s=0.2,
                                      project_dir=str(project), console_level=None))
    assert res.status == "failed" and res.report["unflushed_frames"] == 50
    assert (res.raw_dir / f"2026-08-09_{SYMBOL}_ob200.data").read_bytes() == b""  # every torn write rolled back


def test_parquet_restore_after_a_failed_write_keeps_columns_growable(tmp_path, monkeypatch):
    """ParquetSink.restore after the batch's columns were exported (the disk-full BufferError)."""
    from quantnb.record._book import decode_bybit_book
    from quantnb.record._events import BYBIT_BOOK

    texts = [f.encode() for f in load_bybit_frames()[:40]]
    sink = ParquetSink(tmp_path, "bybit", "linear", "p")
    for i, t in enumerate(texts[:20]):
        sink.write(BYBIT_BOOK, SYMBOL, i + 1, 0, t, decode_bybit_book(t))
    batch = sink.detach()
    monkeypatch.setattr(pl.DataFrame, "write_parquet", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC,
                                                                                                      "full")))
    with pytest.raises(OSError) as info:
        sink.write_batch(batch)
    sink.restore(batch)  # the traceback still holds the exported buffers
    for i, t in enumerate(texts[20:]):
        sink.write(BYBIT_BOOK, SYMBOL, i + 21, 0, t, decode_bybit_book(t))
    del info
    monkeypatch.undo()
    path, _, frames = sink.flush()
    assert frames == 40 and pl.read_parquet(path)["recv_ns"].to_list() == list(range(1, 41))


def test_a_locked_chdb_folder_names_the_folder_and_pid_and_raw_parquet_keep_recording(project):
    folder = project / "data" / "clickhouse"
    holder = subprocess.Popen([sys.executable, "-c", "import chdb.session, sys, time; "
                               f"s = chdb.session.Session({str(folder)!r}); print('open', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with BybitStreamServer(load_bybit_frames()[:100]) as srv:
            res = run_record(RecordParams(venue="bybit", market="linear", symbols=[SYMBOL], depth=200,
                                          channels=["book"], ws_url=srv.url(), sinks=["raw", "parquet", "clickhouse"],
                                          max_messages=100, flush_every_s=0.2, project_dir=str(project),
                                          console_level=None))
    finally:
        holder.kill()
        holder.wait(30)
    assert res.status == "completed_with_errors"
    err = res.report["clickhouse_error"]
    assert str(folder) in err and f"pid {holder.pid}" in err and "Cannot lock file" in err
    assert len((res.raw_dir / f"2026-08-09_{SYMBOL}_ob200.data").read_text().splitlines()) == 100
    assert read_events(res.parquet_dir)["update_id"].n_unique() == 100


def test_a_corrupted_chdb_part_is_detected_on_open(tmp_path):
    frames = [f.encode() for f in load_bybit_frames()[:30]]
    sink = ParquetSink(tmp_path / "pq", "bybit", "linear", "p")
    from quantnb.record._book import decode_bybit_book
    from quantnb.record._events import BYBIT_BOOK

    for i, t in enumerate(frames):
        sink.write(BYBIT_BOOK, SYMBOL, i + 1, 0, t, decode_bybit_book(t))
    path, rows, _ = sink.flush()
    ch = ClickHouseSink(None, tmp_path / "ch")
    assert ch.insert_shard(path, rows)
    ch.close()
    data = next((tmp_path / "ch" / "store").rglob("data.bin"))
    blob = bytearray(data.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    data.write_bytes(bytes(blob))
    with pytest.raises(OperationalError, match=r"chDB folder .*ch: table quantnb.book_events_frames has 1 "
                                               r"corrupted part\(s\) \(part \w+: .*CHECKSUM_DOESNT_MATCH"):
        ClickHouseSink(None, tmp_path / "ch")


@pytest.mark.parametrize("table", ["quantnb.x; DROP DATABASE quantnb", "quantnb.x' OR 1=1", "1abc", "a b", ""])
def test_sql_identifiers_are_refused_before_any_query(tmp_path, table):
    with pytest.raises(ConfigError, match="clickhouse_table"):
        RecordParams.parse({"clickhouse_table": table})
    with pytest.raises(ConfigError, match="not a valid ClickHouse name"):
        ClickHouseSink(None, tmp_path / "ch", table)
    assert not (tmp_path / "ch").exists()  # refused before chDB opened the folder


@pytest.mark.parametrize("bad", [dict(flush_every_s="inf"), dict(duration_s=float("inf")),
                                 dict(flush_every_s=float("nan"))])
def test_flush_every_s_and_duration_s_refuse_inf(bad):
    with pytest.raises(ConfigError, match="finite"):
        RecordParams.parse(bad)
    with pytest.raises(ConfigError, match="finite"):
        RecorderConfig(venue="bybit", market="linear", symbols=(SYMBOL,), **{k: float(v) for k, v in bad.items()})


def test_stop_sends_a_close_frame_with_code_1000(tmp_path):
    with BybitStreamServer(load_bybit_frames()[:50], message_delay_s=0.01) as srv:
        rec = Recorder(config(tmp_path, venue="bybit", market="linear", symbols=(SYMBOL,), channels=("book",),
                              ws_url=srv.url(), duration_s=0.6))
        rec.run()
        deadline = time.monotonic() + 5
        while not srv.close_codes and time.monotonic() < deadline:
            time.sleep(0.05)
        codes = list(srv.close_codes)
    assert codes == [1000]


@pytest.fixture
def tiny_tmpfs(project):
    """A 160 KiB tmpfs on the project's data/recorded (root only; skipped where mount is not allowed)."""
    mnt = project / "data" / "recorded"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_really_full_disk_keeps_whole_lines_no_duplicates_and_fails_the_run(project, tiny_tmpfs):
    with BybitStreamServer(message_delay_s=0.003) as srv:
        res = run_record(RecordParams(venue="bybit", market="linear", symbols=[SYMBOL], depth=200, channels=["book"],
                                      ws_url=srv.url(), sinks=["raw", "parquet"], max_messages=414,
                                      flush_every_s=0.1, project_dir=str(project), console_level=None))
    script = load_bybit_frames()
    lines = (res.raw_dir / f"2026-08-09_{SYMBOL}_ob200.data").read_text().splitlines()
    assert 0 < len(lines) < 414 and lines == script[:len(lines)], len(lines)  # whole frames, in order, once
    assert res.status == "failed" and res.report["unflushed_frames"] >= 414 - len(lines)
    assert res.report["flush_failures"] >= 1
    shards = read_events(res.parquet_dir)
    if shards.height:
        assert shards.select(pl.struct("update_id", "type").n_unique()).item() == \
            shards.select(pl.struct("shard", "update_id", "type").n_unique()).item()  # no frame in two shards
