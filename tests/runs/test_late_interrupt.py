"""A SIGINT/SIGTERM arriving while a run writes its end (a second Ctrl-C, jupyter_client's interrupt before a
kernel shutdown) must not leave run.json or the checkpoint at ``running``."""

from __future__ import annotations

import json
import os
import signal

import pytest

from quantnb.config import StageParams
from quantnb.runs import _run, start_run


class LateParams(StageParams):
    stage = "late"
    alpha: float = 0.5


def _signal_before(fn, signum):
    """``fn`` preceded by a real signal to this process: its handler runs at the next bytecode, inside finish."""

    def wrapped(*args, **kwargs):
        os.kill(os.getpid(), signum)
        return fn(*args, **kwargs)

    return wrapped


def _inject(ctx, monkeypatch, where: str, signum: int) -> None:
    if where == "checkpoint":
        monkeypatch.setattr(ctx.checkpoint, "save", _signal_before(ctx.checkpoint.save, signum))
    elif where == "beat_thread":
        monkeypatch.setattr(ctx, "_stop_beat_thread", _signal_before(ctx._stop_beat_thread, signum))
    else:
        monkeypatch.setattr(_run, "update_run_record", _signal_before(_run.update_run_record, signum))


def _ended(ctx) -> tuple[str, str]:
    record = json.loads((ctx.run_dir / "run.json").read_text())
    checkpoint = json.loads(ctx.paths.checkpoint.read_text())
    return record["status"], checkpoint["status"]


WHERE = ["beat_thread", "checkpoint", "run_record"]


@pytest.mark.parametrize("where", WHERE)
def test_second_sigint_while_an_interrupted_run_is_recorded_is_held_and_dropped(tmp_path, monkeypatch, where):
    ctx = start_run(LateParams(project_dir=str(tmp_path), console_level=None))
    with pytest.raises(KeyboardInterrupt, match="first"):
        with ctx:
            ctx.set_total(2)
            ctx.checkpoint.mark_completed("a")
            ctx.item_done("a")
            _inject(ctx, monkeypatch, where, signal.SIGINT)
            raise KeyboardInterrupt("first")
    assert _ended(ctx) == ("interrupted", "interrupted")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("where", WHERE)
def test_sigint_while_a_completed_run_is_recorded_is_delivered_after_the_record(tmp_path, monkeypatch, where):
    ctx = start_run(LateParams(project_dir=str(tmp_path), console_level=None))
    with pytest.raises(KeyboardInterrupt):
        with ctx:
            ctx.set_total(1)
            ctx.checkpoint.mark_completed("a")
            ctx.item_done("a")
            _inject(ctx, monkeypatch, where, signal.SIGINT)
    assert _ended(ctx) == ("completed", "completed")


def test_sigterm_during_finish_is_held_then_handled_by_the_handler_of_before_the_run(tmp_path, monkeypatch):
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        ctx = start_run(LateParams(project_dir=str(tmp_path), console_level=None))
        _inject(ctx, monkeypatch, "beat_thread", signal.SIGTERM)  # while the run still holds SIGTERM
        assert ctx.finish() == "completed"
        assert _ended(ctx) == ("completed", "completed")
        assert seen == [signal.SIGTERM]  # delivered once, after the record, to the handler the run replaced
    finally:
        signal.signal(signal.SIGTERM, previous)
