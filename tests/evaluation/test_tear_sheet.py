"""The agent's tear sheet: its JSON holds the evaluation's own figures, and the PNG is drawn from that JSON."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest

from quantnb.agent import evaluate_agent
from quantnb.agent._evaluate import stitch_evaluations
from quantnb.agent._tearsheet import MAX_POINTS, plot_tear_sheet, tear_sheet_data
from quantnb.evaluation import sharpe_std_error
from tests.agent._helpers import make_env, month_bars
from tests.conftest import make_project


class SignPolicy:
    """Stand-in predictor that flips long/short with the first observation value (trades, unlike a constant)."""

    def predict(self, observation, deterministic=False):
        return np.array([1.0 if float(observation[0]) > 0 else -1.0], dtype=np.float32), None


def _png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_the_tear_sheet_json_holds_the_evaluations_own_figures_and_draws_a_readable_png(tmp_path):
    bars = month_bars().slice(0, 6_000)
    cuts = [bars["ts"][1_200], bars["ts"][3_600], bars["ts"][5_999]]
    folds = [evaluate_agent(SignPolicy(), make_env(bars, split=1_200, start_ts=a, end_ts=b, fee_bps=5.0),
                            n_boot=100, seed=3) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    stitched = stitch_evaluations(folds, n_boot=100, seed=3)
    sheet = tear_sheet_data(folds, stitched, [stitched], [3], null_seed=3)
    text = json.dumps(sheet)
    assert len(text) < 40_000  # compact: run.json stays small
    for k, (f, ev) in enumerate(zip(sheet["folds"], folds, strict=True)):
        assert f["fold"] == k and len(f["minute"]) <= MAX_POINTS
        assert f["agent"][0] == 1.0 and f["agent"][-1] == pytest.approx(1 + ev.agent.total_return_frac, rel=1e-5)
        assert f["buy_and_hold"][-1] == pytest.approx(1 + ev.buy_and_hold.total_return_frac, rel=1e-5)
    assert sheet["folds"][1]["minute"][0] == pytest.approx((cuts[1] - cuts[0]).total_seconds() / 60, abs=1)
    assert max(sheet["drawdown"]["agent"]) == pytest.approx(stitched.agent.max_drawdown_frac, rel=1e-5)
    # the histogram is the evaluation's own null: same draws, same observed return and p-value
    n = sheet["shift_null"]
    assert n["observed"] == pytest.approx(stitched.timing_null.gross_return_frac, rel=1e-5)
    assert n["p_value"] == pytest.approx(stitched.timing_null.p_value, rel=1e-5)
    assert sum(n["counts"]) == n["n_shifts"] == 999 and len(n["edges"]) == len(n["counts"]) + 1
    # the rolling Sharpe's last point: the last window's Sharpe, with its band of +- 1.96 standard errors
    rs = sheet["rolling_sharpe"]
    w = rs["window_bars"]
    r = np.diff(stitched.equity_usd) / stitched.equity_usd[:-1]
    last = r[-w:]
    sr = last.mean() / last.std(ddof=1)
    ann = math.sqrt(stitched.periods_per_year)
    assert rs["sharpe"][-1] == pytest.approx(sr * ann, rel=1e-4)
    from quantnb.evaluation import return_moments
    mom = return_moments(r)
    half = 1.959964 * sharpe_std_error(sr, w, mom.skew, mom.kurtosis) * ann
    assert rs["band_high"][-1] - rs["band_low"][-1] == pytest.approx(2 * half, rel=1e-4)
    assert all(lo <= s <= hi for lo, s, hi in zip(rs["band_low"], rs["sharpe"], rs["band_high"], strict=True))
    png = plot_tear_sheet(json.loads(text), tmp_path / "sheet.png", title="test")  # drawn from the JSON alone
    assert _png_size(png) == (1300, 800)


@pytest.mark.slow
def test_the_agent_stage_records_the_tear_sheet_in_run_json_and_shows_it(tmp_path):
    from quantnb.stages.agent import AgentParams, run_agent
    from tests.agent.test_agent_stage_evaluation import SMALL, _random_walk_bars

    root = make_project(tmp_path / "proj")
    out = root / "data" / "processed" / "unknown" / "perp" / "BTC-PERP"
    out.mkdir(parents=True)
    _random_walk_bars(2 * 1440, seed=8).write_parquet(out / "2022-01-01.parquet")
    res = run_agent(AgentParams.parse({**SMALL, "project_dir": str(root), "walk_forward_folds": 2, "seeds": [0, 1]}))
    run = json.loads((root / "runs" / res.train_id / "run.json").read_text())
    sheet = run["metrics"]["tear_sheet"]
    assert len(sheet["folds"]) == 2 and sheet["seeds"]["seeds"] == [0, 1]
    by_seed = {r["metric"]: r for r in res.seeds.to_dicts()}["total_return_frac"]
    assert sheet["seeds"]["total_return_frac"] == [pytest.approx(by_seed["seed_0"], rel=1e-5),
                                                   pytest.approx(by_seed["seed_1"], rel=1e-5)]
    assert f"p = {sheet['shift_null']['p_value']:.3f}" in " ".join(res.verdicts)
    assert res.tear_sheet.name == "tear_sheet.png" and _png_size(res.tear_sheet) == (1300, 800)
    assert str(res.tear_sheet.relative_to(root)) in json.dumps(run["outputs"])
    assert res._repr_html_().count("<img") == 2 and "equity and position" in res._repr_html_()
    assert any(v.startswith("always-flat:") for v in res.verdicts)
    assert run["metrics"]["verdict"].count("always-flat:") == 1
