from __future__ import annotations

from quantnb.stages.live import LiveParams


def test_replays_of_two_agents_from_one_demo_get_distinct_readable_run_suffixes():
    plain = LiveParams(train_id="agent_BTC-PERP_6000steps_20261207_103158").run_suffix()
    clf = LiveParams(train_id="agent_BTC-PERP_6000steps_clf_20261207_103301").run_suffix()
    assert plain == "replay_agent_BTC-PERP_6000steps"
    assert clf == "replay_agent_BTC-PERP_6000steps_clf"
