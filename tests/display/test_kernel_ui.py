"""What a notebook shows, measured on a real IPython kernel (jupyter_client): interrupts and the idle monitor."""

from __future__ import annotations

import json
import os
import queue
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from quantnb.config import StageParams
from quantnb.runs import _capture, start_run
from tests.conftest import make_project

pytestmark = pytest.mark.slow


class MonParams(StageParams):
    stage = "labelling"


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[tuple[object, object, Path]]:
    from jupyter_client.manager import start_new_kernel

    project = make_project(tmp_path / "proj")
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(project / "notebooks"), env={**os.environ})
    try:
        yield km, kc, project
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _drain(kc, msg_id: str, timeout_s: float, on_tick=None) -> list[dict]:
    """Every iopub message until ``msg_id``'s cell is idle again; ``on_tick`` is called about every 0.5 s."""
    out, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            m = kc.get_iopub_msg(timeout=0.5)
        except queue.Empty:
            m = None
        if on_tick is not None:
            on_tick()
        if m is None:
            continue
        out.append(m)
        if (m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                and m["parent_header"].get("msg_id") == msg_id):
            return out
    raise AssertionError(f"cell did not finish in {timeout_s} s: {[m['msg_type'] for m in out][-20:]}")


def _count_comm_messages(kc, seconds: float) -> int:
    n, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            m = kc.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            continue
        n += m["msg_type"] in ("comm_msg", "comm_open", "comm_close")
    return n


def test_interrupting_training_shows_one_line_with_what_was_saved_and_how_to_resume(kernel):
    from tests.stages.conftest import write_labelled_month_slice

    km, kc, project = kernel
    labelled = write_labelled_month_slice(project)
    code = (f"from quantnb.stages.training import TrainingParams, run_training\n"
            f"result = run_training(TrainingParams(labelled_dir={labelled!r}, epochs=30, batch_size=32, "
            f"num_threads=1, project_dir={str(project)!r}))")
    msg_id = kc.execute(code)
    sent: list[str] = []

    def interrupt_mid_epoch() -> None:  # once an epoch is saved and a batch of the next one is reported
        if sent:
            return
        for hb in (project / "logs" / "heartbeats").glob("training_*_heartbeat.json"):
            state = json.loads(hb.read_text() or "{}")
            if (state.get("items_done") or 0) >= 1 and "batch" in str(state.get("step") or ""):
                km.interrupt_kernel()
                sent.append(str(state.get("step")))

    msgs = _drain(kc, msg_id, 300, on_tick=interrupt_mid_epoch)
    assert sent, "training never reported a batch inside its second epoch"
    errors = [m["content"] for m in msgs if m["msg_type"] == "error"]
    stderr = [m["content"]["text"] for m in msgs if m["msg_type"] == "stream" and m["content"]["name"] == "stderr"]
    assert len(errors) == 1 and not stderr, (errors, stderr)
    lines = "\n".join(errors[0]["traceback"]).splitlines()
    assert len(lines) == 1, lines
    run_id = next((project / "runs").glob("training_*")).name
    # the SIGINT lands inside a batch ("during epoch 3/30 · batch 7/40") or, on a loaded machine, just
    # after an epoch was saved and before the next one reported its first batch ("after epoch-3")
    assert re.search(rf"run {run_id} interrupted (during epoch \d+/30 · batch \d+/\d+|after epoch-\d+);",
                     lines[0]), lines[0]
    assert "epochs finished and saved" in lines[0], lines[0]
    assert f"resume: quantnb run training --resume {run_id}" in lines[0], lines[0]
    assert errors[0]["ename"] == "KeyboardInterrupt" and f"--resume {run_id}" in errors[0]["evalue"], errors[0]
    stdout = "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")
    assert "Traceback" not in stdout and len(stdout.splitlines()) <= 10, stdout
    rec = json.loads((project / "runs" / run_id / "run.json").read_text())
    assert rec["status"] == "interrupted" and rec["error"].startswith("KeyboardInterrupt: SIGINT"), rec["error"]


def test_the_monitor_sends_nothing_when_idle_and_little_while_a_run_goes_on(kernel):
    km, kc, project = kernel
    for _ in range(3):
        with start_run(MonParams(project_dir=str(project), console_level=None)) as ctx:
            ctx.set_total(1)
            ctx.item_done("a-file")
        time.sleep(1.1)  # distinct run ids (second resolution)
    _capture._state.restore()
    _capture._state = None
    msg_id = kc.execute(f"from quantnb.display import RunMonitor\n"
                        f"monitor = RunMonitor(project_dir={str(project)!r}, refresh_s=0.5)\nmonitor")
    _drain(kc, msg_id, 120)
    time.sleep(1.0)
    idle = _count_comm_messages(kc, 6.0)  # twelve refreshes, nothing changed
    assert idle == 0, f"{idle} widget messages in 6 s with nothing running"

    with start_run(MonParams(project_dir=str(project), console_level=None)) as ctx:
        ctx.set_total(100)
        t0 = time.monotonic()
        busy = 0
        for i in range(6):
            ctx.item_done(f"file-{i}")
            busy += _count_comm_messages(kc, 1.0)
        elapsed = time.monotonic() - t0
    refreshes = elapsed / 0.5
    assert busy / refreshes <= 6, f"{busy} widget messages in {refreshes:.0f} refreshes with one run going on"
