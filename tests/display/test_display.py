from __future__ import annotations

import polars as pl
from loguru import logger

from quantnb.display._html import quality_html, result_html
from quantnb.display._progress import ProgressDisplay
from quantnb.runs._progress import ProgressEvent
from quantnb.stages.etl import EtlParams, EtlResult, run_etl


def test_headless_progress_goes_to_the_log_as_lines_not_a_widget():
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="DEBUG")
    try:
        display = ProgressDisplay("etl_x", "files", widget=False)
        for done in range(1, 4):
            display(ProgressEvent(done=done, total=3, message=f"f{done}.csv", rss_gb=0.25))
        display(ProgressEvent(done=3, total=3, status="completed"))
    finally:
        logger.remove(sink)
    assert display.box is None
    assert lines and lines[-1].startswith("progress 3/3 files (100%)")
    assert "completed in" in lines[-1] and "RSS 0.25 GB" in lines[-1] and "last: f3.csv" in lines[-1]


def test_the_display_draws_the_memory_a_run_measures_in_gb(tmp_path):
    from quantnb.runs import start_run
    from quantnb.runs._heartbeat import memory_gb

    ctx = start_run(EtlParams(project_dir=str(tmp_path), console_level=None))
    seen: list[ProgressEvent] = []
    ctx.add_progress_listener(seen.append)
    ctx.set_total(8)
    ctx.item_done("epoch-2")
    ctx.finish()
    ev = next(e for e in seen if e.kind == "item")
    assert abs(ev.rss_gb - memory_gb()) < 0.5, (ev.rss_gb, memory_gb())  # GB, as the heartbeat: not MB
    line = ProgressDisplay("r", "epochs", widget=False).line(ev)
    assert "1/8 epochs (12%)" in line and f"RSS {ev.rss_gb:.2f} GB" in line and "last: epoch-2" in line


def test_quality_table_shows_only_files_and_counters_with_defects():
    clean = {"path": "a.data", "crossed": 0, "seq_gaps": 0, "examples": []}
    bad = {"path": "b.data", "crossed": 0, "seq_gaps": 3, "time_gaps": 1, "stale_dropped": 50, "examples": []}
    html = quality_html({"data/a.data": clean, "data/b.data": bad})
    assert "1 file(s) with defects, 1 clean" in html
    assert "seq_gaps" in html and "time_gaps" in html
    assert "crossed" not in html and "stale_dropped" not in html and "a.data" not in html


def test_etl_result_html_summarises_outputs_quarantine_and_quality(project):
    result = run_etl(EtlParams(input_globs=["data/samples/ohlcv/*.csv"], n_workers=1, console_level=None,
                               project_dir=str(project)))
    html = result._repr_html_()
    assert result.run_id in html and "completed" in html and "BTC-PERP" in html and "Data quality" in html
    broken = EtlResult("r", "completed_with_errors", pl.DataFrame(schema=result.outputs.schema),
                       {"data/x.zip": "DataError: truncated\nmore"}, {})
    assert "1 file(s) quarantined" in result_html(broken) and "DataError: truncated" in result_html(broken)


def test_training_optimization_and_agent_results_render_tables_and_inline_plots(tmp_path):
    from matplotlib.figure import Figure

    from quantnb.stages.agent import AgentResult
    from quantnb.stages.optimization import OptimizationResult
    from quantnb.stages.training import TrainingResult

    png = tmp_path / "plot.png"
    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    fig.savefig(png)
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "f1_macro": 0.3 + 0.05 * e,
                "is_best": e == 3, "f1_per_class": (0.1, 0.2, 0.3)} for e in (1, 2, 3)]
    test = {"f1_macro": 0.41, "f1_weighted": 0.5, "f1_sell": 0.3, "f1_neutral": 0.6, "f1_buy": 0.33}
    training = TrainingResult("training_x", 0.45, test, tmp_path / "model", png, history)._repr_html_()
    assert training.count("data:image/png;base64,") == 2, "learning curves and the confusion matrix"
    assert "0.4100" in training and "f1_weighted" in training
    trials = pl.DataFrame({"number": [0, 1, 2], "state": ["COMPLETE", "PRUNED", "COMPLETE"],
                           "value": [0.31, None, 0.42]})
    opt = OptimizationResult("optimization_x", "study", 0.42, {"lr": 1e-3}, tmp_path / "best.json", trials)
    html = opt._repr_html_()
    assert "Best trials" in html and html.index("0.42") < html.index("0.31"), "best trial first"
    agent = AgentResult("agent_x", tmp_path / "bundle", {}, png,
                        pl.DataFrame({"policy": ["agent", "buy_and_hold"], "return_frac": [0.02, -0.01]}))
    html = agent._repr_html_()
    assert "buy_and_hold" in html and "data:image/png;base64," in html and "train_id=agent_x" in html


def test_no_widget_outside_a_kernel_a_person_looks_at(monkeypatch):
    from quantnb.display import HEADLESS_ENV
    from quantnb.display._progress import in_interactive_frontend

    assert not in_interactive_frontend()  # plain Python (pytest): no IPython kernel
    monkeypatch.setenv(HEADLESS_ENV, "1")  # what quantnb run sets for its kernels
    assert not in_interactive_frontend()
    assert ProgressDisplay("r", widget=None).box is None


def test_the_agent_result_shows_each_figure_with_its_interval_the_span_and_the_trial_count(tmp_path):
    import re

    from quantnb.stages.agent import AgentResult

    table = pl.DataFrame({
        "metric": ["total_return_frac", "sharpe_annualised", "sharpe_ci_low", "sharpe_ci_high", "return_ci_low",
                   "return_ci_high", "sharpe_daily_annualised", "psr", "n_trials"],
        "agent": [-0.02244, -205.0, -272.0, -146.1, -0.02989, -0.01477, None, 5.55e-17, 3.0],
        "buy_and_hold": [0.0011, 1.886, -50.65, 52.47, -0.03364, 0.03629, None, 0.5278, 3.0]})
    span = {"train": ["2021-12-31 23:01:00+00:00", "2022-01-02 11:00:00+00:00"],
            "eval": ["2022-01-02 11:00:00+00:00", "2022-01-02 23:00:00+00:00"]}
    agent = AgentResult("agent_x", tmp_path / "bundle", {"n_trials": 3}, tmp_path / "none.png", table,
                        data_span=span)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", agent._repr_html_()))
    assert "sharpe_annualised [95% CI] -205 [-272, -146.1] 1.886 [-50.65, 52.47]" in text, text
    assert "total_return_frac [95% CI] -0.02244 [-0.02989, -0.01477]" in text, text
    assert "sharpe_ci_low" not in text and "return_ci_high" not in text, "an interval sits beside its figure"
    assert "psr 0.00 0.53" in text and "e-17" not in text, text
    assert "sharpe_daily_annualised n/a n/a" in text, "an empty figure says so"
    assert "evaluated on 2022-01-02 11:00 → 2022-01-02 23:00 UTC (0.5 days)" in text, text
    assert "trained on 2021-12-31 23:01 → 2022-01-02 11:00; 3 trial(s) on this span" in text, text


def test_the_training_result_shows_the_split_spans_and_each_baseline_difference_with_its_interval(tmp_path):
    import re

    from quantnb.stages.training import TrainingResult

    base = {"level": 0.95, "mean_block_len": 30.0, "n_boot": 1000}
    test = {"f1_macro": 0.7305, "f1_weighted": 0.8, "baselines": {
        "persistence": {**base, "baseline": "persistence", "f1_macro": 0.6125, "model_minus_baseline": 0.118,
                        "diff_ci_low": 0.047, "diff_ci_high": 0.165, "verdict": "the model beats the persistence"},
        "majority": {**base, "baseline": "majority", "f1_macro": 0.2107, "model_minus_baseline": 0.52,
                     "diff_ci_low": -0.01, "diff_ci_high": 0.626, "verdict": "not distinguishable"}}}
    span = {name: {"start": f"2024-01-0{d}T00:00:00+00:00", "end": f"2024-01-0{d}T23:59:00+00:00", "rows": 1440,
                   "windows": w} for name, d, w in (("train", 1, 6019), ("val", 5, 1254), ("test", 6, 1255))}
    res = TrainingResult("training_x", 0.87, test, tmp_path / "model", tmp_path / "none.png", [], span)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", res._repr_html_()))
    assert "test 2024-01-06 00:00 → 2024-01-06 23:59 (1,255 windows)" in text, text
    assert "train 2024-01-01 00:00 → 2024-01-01 23:59 (6,019 windows)" in text, text
    assert "persistence 0.6125 +0.118 [+0.047, +0.165]" in text, text
    assert "majority 0.2107 +0.520 [-0.010, +0.626]" in text, text
