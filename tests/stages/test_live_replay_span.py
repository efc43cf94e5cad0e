"""The live replay's default span: the bars after the agent's walk-forward, or a plain word that there are none."""

from __future__ import annotations

import datetime as dt
import types

from loguru import logger

from quantnb.stages.live import LiveParams, _replay_start

EVAL = ["2022-01-18 06:12:00+00:00", "2022-01-29 00:00:00+00:00"]


def _said(metadata) -> tuple[dt.datetime | None, list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="INFO", format="{message}")
    try:
        start = _replay_start(LiveParams(train_id="agent_x"), metadata)
    finally:
        logger.remove(sink)
    return start, lines


def test_after_a_walk_forward_with_a_holdout_the_replay_starts_after_the_last_fold_without_a_warning():
    meta = types.SimpleNamespace(data_span={"train": ["a", "b"], "eval": EVAL,
                                            "after_eval": ["2022-01-29 00:01:00+00:00", "2022-02-01 00:00:00+00:00"]})
    start, lines = _said(meta)
    assert start == dt.datetime(2022, 1, 29, 0, 1, tzinfo=dt.UTC)
    assert not [x for x in lines if "selected on" in x]


def test_without_later_bars_the_replay_says_in_one_line_that_it_replays_data_the_agent_was_selected_on():
    start, lines = _said(types.SimpleNamespace(data_span={"train": ["a", "b"], "eval": EVAL}))
    assert start == dt.datetime(2022, 1, 18, 6, 12, tzinfo=dt.UTC)
    said = [x for x in lines if "selected on" in x]
    assert len(said) == 1 and "\n" not in said[0].strip() and EVAL[0] in said[0]
