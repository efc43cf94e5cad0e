"""A finite replay shows its total from the start (not ``10081/? bars``)."""

from __future__ import annotations

import pytest

from quantnb.runs import _capture
from quantnb.runs._progress import add_progress_listener
from tests.stages.test_trading_stages import LONG_ID, _live_project, tiny_bundles  # noqa: F401 (the fixture)

pytestmark = pytest.mark.slow


def test_a_replay_declares_its_total_before_the_first_bar(tmp_path, tiny_bundles):  # noqa: F811
    from quantnb.stages.live import LiveParams, run_live

    _, _, split = tiny_bundles
    root = _live_project(tmp_path, "proj", tiny_bundles)
    events = []
    remove = add_progress_listener(events.append)
    try:
        result = run_live(LiveParams(train_id=LONG_ID, replay_glob="data/processed/replay/*.parquet",
                                     replay_start=split.isoformat(), project_dir=str(root), console_level=None))
    finally:
        remove()
        if _capture._state is not None:
            _capture._state.restore()
            _capture._state = None
    first_bar = next(i for i, e in enumerate(events) if e.kind == "item")
    assert events[first_bar].total is not None, "the first bar was shown as n/? bars"
    steps = result.stats.steps
    assert steps > 0 and events[-1].done == steps and events[-1].total == steps, (steps, events[-1])
