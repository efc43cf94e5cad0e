"""Heartbeat JSON: no dropped update, liveness beats between items, ETA that follows the total."""

from __future__ import annotations

import json
import time

from quantnb.config import StageParams
from quantnb.runs import start_run
from quantnb.runs._progress import add_progress_listener


class HbParams(StageParams):
    stage = "hb"


def _wait_for(pred, timeout_s: float = 20.0) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if pred():
            return True
        time.sleep(0.05)
    return False


def _read(ctx) -> dict:
    return json.loads(ctx.paths.heartbeat_json.read_text())


def test_a_throttled_update_is_written_within_about_a_second(tmp_path):
    ctx = start_run(HbParams(project_dir=str(tmp_path), console_level=None))
    ctx.item_done("first")  # written: the throttle has elapsed since the start
    ctx.item_done("second")  # throttled: must still reach the file soon, without another item
    assert _wait_for(lambda: _read(ctx).get("last_item") == "second", timeout_s=10)
    assert _read(ctx)["items_done"] == 2
    ctx.finish()


def test_liveness_beat_between_items_and_listener_events(tmp_path):
    events = []
    remove = add_progress_listener(events.append)
    try:
        ctx = start_run(HbParams(project_dir=str(tmp_path), console_level=None))
        ctx.beat_interval_s = 0.3
        ctx.set_total(10)
        ctx.item_done("a", events=5)
        first = _read(ctx).get("last_beat_at")
        assert _wait_for(lambda: _read(ctx).get("last_beat_at") not in (None, first))
        assert _wait_for(lambda: any(e.kind == "beat" for e in events))
        ctx.finish()
    finally:
        remove()
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and "total" in kinds and "item" in kinds and kinds[-1] == "finish"
    item = next(e for e in events if e.kind == "item")
    assert item.done == 1 and item.total == 10 and item.message == "a" and item.rss_gb > 0
    assert item.rate_per_s is not None and item.eta_s is not None
    assert events[-1].status == "completed"


def test_eta_follows_a_shrinking_total(tmp_path):
    ctx = start_run(HbParams(project_dir=str(tmp_path), console_level=None))
    seen = []
    ctx.add_progress_listener(seen.append)
    ctx.set_total(8)
    for i in range(4):
        ctx.item_done(f"epoch-{i}")
    assert seen[-1].eta_s > 0
    ctx.set_total(4)  # early stopping: 4 of 8 epochs is the whole run
    hb = _read(ctx)
    assert hb["eta_s"] == 0 and hb["progress_pct"] == 100.0 and hb["total_items"] == 4
    assert seen[-1].kind == "total" and seen[-1].eta_s == 0 and seen[-1].fraction == 1.0
    ctx.finish()
    assert _read(ctx)["status"] == "completed"


def test_a_failing_listener_does_not_stop_the_run(tmp_path):
    ctx = start_run(HbParams(project_dir=str(tmp_path), console_level=None))

    def broken(event):
        raise RuntimeError("display gone")

    ctx.add_progress_listener(broken)
    ctx.item_done("a")
    assert ctx.finish() == "completed"
