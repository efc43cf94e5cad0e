"""The agent stage's evaluation table: uncertainty of every figure, trials counted from ``runs/``."""

from __future__ import annotations

import html
import json

import pytest

from quantnb.stages.agent import AgentParams, run_agent
from tests.agent._helpers import month_bars
from tests.conftest import make_project

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
                "bh_sharpe", "bh_sharpe_ci_low", "bh_psr", "verdict", "timing_p_value"):
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
    from quantnb.agent import load_agent_bundle

    span = load_agent_bundle(second.bundle_dir.parent).metadata.data_span  # one split: the whole bars, as before
    assert span["train"][0].startswith("2021-12-31") and span["eval"][1].startswith("2022-01-02")
    assert span["train"][1] == span["eval"][0]


@pytest.mark.slow
def test_walk_forward_trains_each_fold_on_the_past_only_and_stitches_the_out_of_sample_curve(tmp_path):
    import datetime as dt

    from quantnb.agent import load_agent_bundle

    root = make_project(tmp_path / "proj")
    out = root / "data" / "processed" / "unknown" / "perp" / "BTC-PERP"
    out.mkdir(parents=True)
    month_bars().head(2 * 1440).write_parquet(out / "2022-01-01.parquet")
    res = run_agent(AgentParams.parse({**SMALL, "project_dir": str(root), "walk_forward_folds": 2,
                                       "walk_forward_mode": "rolling", "walk_forward_embargo_min": 30}))
    folds = res.folds.to_dicts()
    assert len(folds) == 2 and "walk-forward folds" in res._repr_html_()
    for f in folds:
        train_end, test_start = dt.datetime.fromisoformat(f["train_end"]), dt.datetime.fromisoformat(f["test_start"])
        assert train_end < test_start - dt.timedelta(minutes=30)  # the past only, embargoed
    assert folds[0]["test_end"] <= folds[1]["test_start"]
    assert folds[1]["train_start"] is not None and folds[1]["train_start"] > folds[0]["train_start"]  # rolling
    stitched = res.metrics["agent"]
    assert 1 + stitched["total_return_frac"] == pytest.approx(
        (1 + folds[0]["return_frac"]) * (1 + folds[1]["return_frac"]), rel=1e-9)
    assert "walk-forward, 2 folds" in res.verdicts[0]
    assert res.metrics["walk_forward"]["mode"] == "rolling"
    meta = load_agent_bundle(res.bundle_dir.parent).metadata
    assert meta.data_span["eval"][0] == folds[1]["test_start"]  # live replays the last fold's test span
    run = json.loads((root / "runs" / res.train_id / "run.json").read_text())
    assert run["metrics"]["walk_forward_folds"] == 2 and len(run["results"]["walk_forward_folds"]) == 2


@pytest.mark.slow
def test_seeds_are_trials_and_each_metric_gets_its_spread_across_seeds(tmp_path):
    import numpy as np

    root = make_project(tmp_path / "proj")
    out = root / "data" / "processed" / "unknown" / "perp" / "BTC-PERP"
    out.mkdir(parents=True)
    month_bars().head(2 * 1440).write_parquet(out / "2022-01-01.parquet")
    res = run_agent(AgentParams.parse({**SMALL, "project_dir": str(root), "seeds": [3, 4]}))
    one = run_agent(AgentParams.parse({**SMALL, "project_dir": str(root), "seed": 4}))
    assert "across seeds" in res._repr_html_()
    rows = {r["metric"]: r for r in res.seeds.to_dicts()}
    ret = rows["total_return_frac"]
    assert ret["seed_3"] == pytest.approx(res.metrics["agent"]["total_return_frac"])  # the bundle is seed 3's
    assert ret["seed_4"] == pytest.approx(one.metrics["agent"]["total_return_frac"])  # seed 4 alone: the same
    assert ret["mean"] == pytest.approx((ret["seed_3"] + ret["seed_4"]) / 2)
    assert ret["sd"] == pytest.approx(float(np.std([ret["seed_3"], ret["seed_4"]], ddof=1)))
    assert ret["ci_low"] <= ret["mean"] <= ret["ci_high"]
    run = json.loads((root / "runs" / res.train_id / "run.json").read_text())
    assert run["metrics"]["n_trials"] == 2  # two seeds on this span
    assert run["metrics"]["seeds"]["sharpe_annualised"]["sd"] >= 0
    # the later run counts both seeds of the earlier one, and itself
    assert json.loads((root / "runs" / one.train_id / "run.json").read_text())["metrics"]["n_trials"] == 3


def _random_walk_bars(n: int, seed: int):
    import datetime as dt

    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, n)))  # driftless: no edge to find
    open_ = np.r_[close[0], close[:-1]]
    start = dt.datetime(2022, 1, 1, tzinfo=dt.UTC)
    return pl.DataFrame({
        "ts": pl.Series([start + dt.timedelta(minutes=i) for i in range(n)]).dt.cast_time_unit("us"),
        "open": open_, "high": np.maximum(open_, close) * 1.0002, "low": np.minimum(open_, close) * 0.9998,
        "close": close, "volume": rng.uniform(1.0, 10.0, n)})


@pytest.mark.slow
def test_on_a_driftless_random_walk_the_walk_forward_report_over_two_seeds_claims_no_skill(tmp_path):
    root = make_project(tmp_path / "proj")
    out = root / "data" / "processed" / "unknown" / "perp" / "BTC-PERP"
    out.mkdir(parents=True)
    _random_walk_bars(2 * 1440, seed=8).write_parquet(out / "2022-01-01.parquet")
    res = run_agent(AgentParams.parse({**SMALL, "project_dir": str(root), "walk_forward_folds": 2, "seeds": [0, 1]}))
    assert res.metrics["agent"]["n_trials"] == 2 and res.metrics["agent"]["dsr"] < 0.95
    assert not any("distinguishable from zero after" in v for v in res.verdicts), res.verdicts
    rows = {r["metric"]: r for r in res.seeds.to_dicts()}
    assert rows["sharpe_annualised"]["ci_low"] < rows["sharpe_annualised"]["ci_high"]
