"""The agent stage's evaluation table: uncertainty of every figure, trials counted from ``runs/``."""

from __future__ import annotations

import html
import json

import pytest

from quantnb.stages.agent import AgentParams, run_agent
from tests.conftest import make_project
from tests.rl._helpers import month_bars

SMALL = dict(eval_days=0.5, window=4, total_timesteps=100, buffer_size=300, learning_starts=50, batch_size=32,
             checkpoint_every_steps=100, progress_every_steps=100, net_arch=[8], warmup_bars=60,
             max_episode_steps=100, console_level=None)


@pytest.mark.slow
def test_agent_runs_on_the_same_span_are_counted_as_trials_and_every_figure_has_its_interval(tmp_path, capsys):
    root = make_project(tmp_path / "proj")
    out = root / "data" / "processed" / "unknown" / "perp" / "BTC-PERP"
    out.mkdir(parents=True)
    month_bars().head(2 * 1440).write_parquet(out / "2022-01-01.parquet")
    first = run_agent(AgentParams.parse({**SMALL, "project_dir": str(root)}))
    second = run_agent(AgentParams.parse({**SMALL, "project_dir": str(root), "seed": 1}))
    other_span = run_agent(AgentParams.parse({**SMALL, "project_dir": str(root), "eval_days": 0.4}))
    m1 = json.loads((root / "runs" / first.train_id / "run.json").read_text())["metrics"]
    m2 = json.loads((root / "runs" / second.train_id / "run.json").read_text())["metrics"]
    m3 = json.loads((root / "runs" / other_span.train_id / "run.json").read_text())["metrics"]
    assert (m1["n_trials"], m2["n_trials"], m3["n_trials"]) == (1, 2, 1)
    for key in ("sharpe_ci_low", "sharpe_ci_high", "sharpe_daily", "psr", "dsr", "return_ci_low", "return_ci_high",
                "bh_sharpe", "bh_sharpe_ci_low", "bh_psr", "verdict"):
        assert key in m2, key
    assert m2["sharpe_ci_low"] <= m2["sharpe"] <= m2["sharpe_ci_high"]
    assert m2["dsr"] <= m2["psr"]
    # half a day of a 100-step agent: no claim of skill (at best a distinguishable loss)
    assert "not distinguishable from zero" in m2["verdict"] and "distinguishable from zero after" not in m2["verdict"]
    table = second.summary()
    assert "agent: " in capsys.readouterr().out
    assert {"sharpe_ci_low", "dsr", "n_trials"} <= set(table["metric"])
    assert dict(zip(table["metric"], table["agent"], strict=True))["n_trials"] == 2
    assert second.verdicts and html.escape(second.verdicts[0]) in second._repr_html_()
