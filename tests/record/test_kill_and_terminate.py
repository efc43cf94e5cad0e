"""A recorder process killed with SIGKILL or stopped with SIGTERM: whole files, every shard once, nothing lost."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import chdb.session
import msgspec
import polars as pl
import pytest

from quantnb.data import ingest_file
from quantnb.record import read_events
from quantnb.stages.record import RecordParams, run_record
from quantnb.testing.bybit_ws_server import BybitStreamServer
from tests.conftest import REPO

SYMBOL = "BTCUSDT"
pytestmark = pytest.mark.slow


def _params(project, srv, **kw) -> dict:
    base = dict(venue="bybit", market="linear", symbols=[SYMBOL], depth=200, channels=["book"],
                ws_url=srv.url("linear"), sinks=["raw", "parquet", "clickhouse"], flush_every_s=0.2,
                progress_every_s=0.5, project_dir=str(project), console_level=None)
    base.update(kw)
    return base


def _child(params: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.record._child", json.dumps(params)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for_shards(shard_dir, n: int, proc: subprocess.Popen, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if shard_dir.exists() and len(list(shard_dir.glob("*.parquet"))) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the recorder exited early ({proc.returncode}): {proc.stderr.read()[-2000:]!r}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no {n} shards in {shard_dir} within {timeout_s} s")


def _ch(project, sql: str) -> str:
    sess = chdb.session.Session(str(project / "data" / "clickhouse"))
    try:
        return str(sess.query(sql, "CSV")).strip()
    finally:
        sess.close()


def test_sigkill_then_restart_leaves_whole_files_and_no_duplicate_rows(project):
    raw = project / "data" / "recorded" / "raw" / "bybit" / "linear" / f"2026-08-09_{SYMBOL}_ob200.data"
    shards = project / "data" / "recorded" / "parquet" / "bybit" / "linear"
    with BybitStreamServer(message_delay_s=0.015) as srv:
        proc = _child(_params(project, srv))
        _wait_for_shards(shards, 2, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert srv.cursor < len(srv.frames), "the stream ended before the kill; slow the server down"
        with open(raw, "ab") as fh:  # what a kill in the middle of a write leaves
            fh.write(b'{"topic":"orderbook.200.BTCUSDT","type":"del')
        before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in shards.glob("*.parquet")}
        res = run_record(RecordParams(**_params(project, srv, duration_s=9.0)))
        assert srv.done.is_set()
    assert res.status == "completed"
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in shards.glob("*.parquet")}
    assert {k: after[k] for k in before} == before, "the restart touched an earlier shard"
    assert len(after) > len(before)
    assert not list(shards.glob(".*.tmp"))
    data = raw.read_bytes()
    assert data.endswith(b"\n")
    for line in data.splitlines():
        msgspec.json.decode(line)  # every line whole
    ing = ingest_file(raw)
    assert (ing.book.best_bid, ing.book.best_ask) == (65114.2, 65114.3)
    events = read_events(shards)
    per_shard = dict(events.group_by("shard").len().iter_rows())
    in_ch = dict(pl.read_csv(_ch(project, "SELECT shard, count() FROM quantnb.book_events GROUP BY shard "
                                          "FORMAT CSV").encode(), has_header=False).iter_rows())
    assert in_ch == per_shard, "ClickHouse must hold every shard exactly once"
    assert res.report["reconnects"] == 0 and res.report["snapshots"] == 1


def test_sigterm_flushes_every_sink_and_records_final_counters(project):
    raw = project / "data" / "recorded" / "raw" / "bybit" / "linear" / f"2026-08-09_{SYMBOL}_ob200.data"
    shards = project / "data" / "recorded" / "parquet" / "bybit" / "linear"
    with BybitStreamServer(message_delay_s=0.015) as srv:
        proc = _child(_params(project, srv, flush_every_s=60.0, sinks=["raw", "parquet"]))
        deadline = time.monotonic() + 90
        while srv.n_sent < 60 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not list(shards.glob("*.parquet")), "nothing is flushed before the first flush interval"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, proc.stderr.read()[-2000:]
    runs = sorted((project / "runs").glob("record_*"))
    rec = json.loads((runs[-1] / "run.json").read_text())
    assert rec["status"] == "interrupted"
    n = rec["results"]["messages"]
    assert n >= 60 and rec["results"]["stopped_by"] == "stop"
    assert len(raw.read_bytes().splitlines()) == n
    events = read_events(shards)
    assert events.select("recv_ns", "update_id").unique().height == n
    log = (project / "logs" / "record" / f"{runs[-1].name}.log").read_text()
    assert "Final counters" in log and ("SIGTERM" in log or "Interrupt" in log)
    assert os.path.getsize(raw) > 0
