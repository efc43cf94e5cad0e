"""Long items do not look hung: steps inside an item, rates that read, an ETA from fractions, totals at once."""

from __future__ import annotations

import json
import time
import types

import pytest
from loguru import logger

from quantnb.config import StageParams
from quantnb.display._progress import ProgressDisplay
from quantnb.runs import start_run
from quantnb.runs._progress import ProgressEvent, add_progress_listener


class StepParams(StageParams):
    stage = "training"


class _Clock:
    """The display's monotonic clock, advanced by the test (rates and ETAs without sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    import quantnb.display._progress as progress

    c = _Clock()
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(monotonic=c))  # this module's clock only
    return c


def test_a_slow_epoch_shows_its_batches_seconds_per_epoch_and_an_eta(clock: _Clock):
    display = ProgressDisplay("training_x", "epochs", widget=False)
    display(ProgressEvent(kind="start", done=0, total=None))
    display(ProgressEvent(kind="total", done=0, total=10))
    # 120 batches an epoch, one every 0.5 s: an epoch takes 60 s, no epoch has finished yet
    for batch in range(1, 41):
        clock.now += 0.5
        display(ProgressEvent(kind="step", done=0, total=10, step_done=batch, step_total=120,
                              step_unit="batches", context="epoch 1/10", item_fraction=batch / 120))
    line = display.line(display._last)
    assert "0/10 epochs (3%)" in line, line
    assert "epoch 1/10 · batch 40/120" in line, line
    assert "60 s/epoch" in line and "epochs/s" not in line, line
    eta = display._eta_s(display._last)  # 9.67 epochs left at 60 s each
    assert eta == pytest.approx((10 - 40 / 120) * 60, rel=0.03), eta
    assert "ETA 9:40" in line, line


def test_a_fast_stage_keeps_items_per_second():
    from quantnb.display._progress import _fmt_rate

    assert _fmt_rate(3.14, "files") == "3.1 files/s"
    assert _fmt_rate(250.0, "bars") == "250 bars/s"
    assert _fmt_rate(1 / 41, "epochs") == "41 s/epoch"
    assert _fmt_rate(1 / 300, "trials") == "5.0 min/trial"
    assert _fmt_rate(1 / 3.5, "batches") == "3.5 s/batch"


def test_a_total_is_drawn_at_once_even_inside_the_throttle(clock: _Clock):
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="DEBUG")
    try:
        display = ProgressDisplay("etl_x", "files", widget=False)
        display(ProgressEvent(kind="start", done=0, total=None))
        clock.now += 0.01  # "Found 5 input file(s)", then set_total: well inside the throttle
        display(ProgressEvent(kind="total", done=0, total=5))
    finally:
        logger.remove(sink)
    assert lines[-1].startswith("progress 0/5 files (0%)"), lines


def _wait_for_step(ctx) -> dict:
    """The heartbeat JSON once its throttled step update is on disk (the beat thread writes it within ~1 s)."""
    deadline = time.monotonic() + 10
    while True:
        hb = json.loads(ctx.paths.heartbeat_json.read_text())
        if hb.get("step") or time.monotonic() > deadline:
            return hb
        time.sleep(0.05)


def test_the_run_sends_steps_with_their_context_and_clears_them_with_the_item(tmp_path):
    events = []
    remove = add_progress_listener(events.append)
    try:
        with start_run(StepParams(project_dir=str(tmp_path), console_level=None)) as ctx:
            ctx.set_total(2)
            for b in (1, 2, 3):
                ctx.report_step(b, 3, "batches", context="epoch 1/2")
            hb = _wait_for_step(ctx)
            ctx.item_done("epoch-1")
    finally:
        remove()
    steps = [e for e in events if e.kind == "step"]
    assert steps and steps[-1].step_done == 3 and steps[-1].step_total == 3, steps
    assert steps[-1].context == "epoch 1/2" and steps[-1].item_fraction == 1.0
    assert hb["step"] == "epoch 1/2 · batch 3/3"
    item = next(e for e in events if e.kind == "item")
    assert item.step_done is None and item.context == "", "a finished item's steps are not shown again"


def test_an_interrupt_has_a_reason_in_the_log_and_run_json(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with start_run(StepParams(project_dir=str(tmp_path), console_level=None)) as ctx:
            ctx.set_total(3)
            ctx.report_step(7, 47, "batches", context="epoch 2/3")
            raise KeyboardInterrupt
    rec = json.loads((ctx.run_dir / "run.json").read_text())
    assert rec["status"] == "interrupted"
    assert rec["error"] == ("KeyboardInterrupt: SIGINT (Ctrl-C, or Kernel > Interrupt in Jupyter) during "
                            "epoch 2/3 · batch 7/47"), rec["error"]
    log = ctx.log_path.read_text()
    assert f"Run {ctx.run_id} interrupted: KeyboardInterrupt: SIGINT" in log


def test_interrupt_reason_says_sigterm_and_where():
    from quantnb.runs._interrupt import interrupt_reason

    assert interrupt_reason(KeyboardInterrupt("signal SIGTERM"), None, "trial-3") == \
        "KeyboardInterrupt: signal SIGTERM (after trial-3)"
    assert interrupt_reason(KeyboardInterrupt()).startswith("KeyboardInterrupt: SIGINT")


def test_optunas_interrupted_trial_echo_stays_in_the_session_log(tmp_path, capsys):
    import logging
    import sys

    with start_run(StepParams(project_dir=str(tmp_path), console_level="INFO")) as ctx:
        optuna_log = logging.getLogger("optuna.study._optimize")
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            optuna_log.warning("Trial 1 failed with parameters: {} because of the following error: "
                               "KeyboardInterrupt().", exc_info=sys.exc_info())
        optuna_log.warning("Trial 1 failed with value None.")
        optuna_log.warning("Trial 2 failed with value None.")  # not an echo of an interrupt: shown
    out = capsys.readouterr().out
    assert "Trial 1 failed" not in out and "Traceback" not in out, out
    assert "Trial 2 failed with value None." in out
    log = ctx.log_path.read_text().splitlines()
    echoes = [line for line in log if "Trial 1 failed" in line]
    assert len(echoes) == 2 and all("| DEBUG    |" in line for line in echoes), echoes
    assert "KeyboardInterrupt" in "\n".join(log), "the session log keeps the traceback"


def test_the_runs_sigterm_handler_ends_with_the_run(tmp_path):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    with start_run(StepParams(project_dir=str(tmp_path), console_level=None)):
        assert signal.getsignal(signal.SIGTERM) is not before  # SIGTERM interrupts the run like Ctrl-C
    assert signal.getsignal(signal.SIGTERM) is before, "the run's SIGTERM handler outlived the run"
