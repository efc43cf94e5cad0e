"""Post-mortem verdicts on runs built to trigger each former false alarm, and what it shows."""

from __future__ import annotations

import datetime as dt

import matplotlib.dates as mdates
import polars as pl
import pytest
from loguru import logger

from quantnb.config import StageParams
from quantnb.display._postmortem import plot_learning_curve, plot_memory, plot_timeline
from quantnb.runs import analyse_run, start_run
from quantnb.runs._postmortem import is_leak, memory_trend


class PmParams(StageParams):
    stage = "pmtest"
    variant: int = 0


def _params(root, variant: int = 0) -> PmParams:
    return PmParams(project_dir=str(root), console_level=None, variant=variant)


def test_checkpoints_pruned_by_design_are_not_reported_missing(tmp_path):
    with start_run(_params(tmp_path)) as ctx:
        ctx.set_shard_retention(keep_last=1)
        ckpt = ctx.run_dir / "checkpoints"
        ckpt.mkdir()
        for step in (1, 2, 3):
            shard = ckpt / f"model_step{step}.zip"
            shard.write_bytes(b"m")
            ctx.batch_saved(step, 1, step * 100, shard)
            for old in ckpt.glob("*.zip"):  # the rolling checkpoint deletes the older one
                if old != shard:
                    old.unlink()
    report = analyse_run(tmp_path, ctx.run_id)
    assert report.shards_missing == [] and len(report.shards_pruned) == 2 and report.shards_orphaned == []
    assert "missing shard" not in report.summary() and "2 pruned by design" in report.summary()


def test_a_lost_newest_shard_is_still_reported_missing(tmp_path):
    with start_run(_params(tmp_path)) as ctx:
        ctx.set_shard_retention(keep_last=1)
        shard = ctx.run_dir / "model_step1.zip"
        shard.write_bytes(b"m")
        ctx.batch_saved(1, 1, 100, shard)
        shard.unlink()
    assert analyse_run(tmp_path, ctx.run_id).shards_missing == [str(shard)]


def _series(minutes: list[float], mem_gb: list[float]) -> pl.DataFrame:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return pl.DataFrame({"timestamp": [t0 + dt.timedelta(minutes=m) for m in minutes], "mem_gb": mem_gb})


def test_memory_leak_needs_a_sustained_trend_over_enough_points():
    three_rising = _series([0, 1, 2], [1.0, 1.1, 1.2])
    assert not is_leak(memory_trend(three_rising))  # the former alarm: rising at 3 batches
    noisy_flat = _series(list(range(30)), [1.0 + 0.05 * ((-1) ** i) for i in range(30)])
    assert not is_leak(memory_trend(noisy_flat))
    slow = _series([i * 6 for i in range(20)], [1.0 + 0.001 * i for i in range(20)])  # +19 MB in 2 h
    assert not is_leak(memory_trend(slow))
    leak = _series([i * 3 for i in range(20)], [1.0 + 0.05 * i for i in range(20)])  # +950 MB in 1 h
    trend = memory_trend(leak)
    assert is_leak(trend) and trend["slope_mb_per_h"] > 900 and trend["points"] == 20


def test_three_rising_points_in_a_real_run_raise_no_alarm(tmp_path):
    with start_run(_params(tmp_path)) as ctx:
        for i in range(3):
            ctx.batch_saved(i, 1, 10, ctx.run_dir / f"s{i}.bin")
            (ctx.run_dir / f"s{i}.bin").write_bytes(b"x" * (i + 1))
            ctx.item_done(f"i{i}")
    report = analyse_run(tmp_path, ctx.run_id)
    assert not report.memory_rising and "possible leak" not in report.summary()


def test_early_stopping_leaves_nothing_remaining(tmp_path):
    with start_run(_params(tmp_path)) as ctx:
        ctx.set_total(8)
        for epoch in range(1, 5):
            ctx.checkpoint.mark_completed(f"epoch-{epoch}")
            ctx.item_done(f"epoch-{epoch}")
        ctx.set_total(4)  # early stopping at epoch 4 of 8
    report = analyse_run(tmp_path, ctx.run_id)
    assert report.items_remaining == 0 and report.stopped_early and report.items_total == 4
    text = report.summary()
    assert "remaining of 8" not in text and "none remaining" in text and "stopped early" in text


def test_an_open_ended_live_run_counts_its_bars(tmp_path):
    with start_run(_params(tmp_path)) as ctx:  # live: items without a checkpoint and without a total
        for i in range(5):
            ctx.item_done(f"bar 2026-01-01 00:0{i}", events=1)
    report = analyse_run(tmp_path, ctx.run_id)
    assert report.items_done == 5 and report.items_total is None
    text = report.summary()
    assert "0 done" not in text and "? remaining" not in text and "open-ended" in text


def test_cause_last_progress_and_resume_command(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with start_run(_params(tmp_path)) as ctx:
            ctx.set_total(10)
            ctx.checkpoint.mark_completed("file-1")
            ctx.item_done("file-1")
            logger.warning("disk 90% full")
            raise KeyboardInterrupt("signal SIGTERM")
    report = analyse_run(tmp_path, ctx.run_id)
    assert report.status == "interrupted" and "SIGTERM" in report.cause
    assert report.resume_command == f"quantnb run pmtest --resume {ctx.run_id}"
    assert report.last_progress.startswith("file-1 at ") and "1 done of 10" in report.last_progress
    text = report.summary()
    assert "cause: KeyboardInterrupt: signal SIGTERM" in text and "resume with: quantnb run pmtest" in text
    with pytest.raises(ZeroDivisionError):
        with start_run(_params(tmp_path, 1)) as failed:
            1 / 0  # noqa: B018
    assert "ZeroDivisionError" in analyse_run(tmp_path, failed.run_id).cause


def test_learning_curves_timeline_and_readable_time_axes(tmp_path):
    with start_run(_params(tmp_path)) as ctx:
        for epoch, f1 in enumerate((0.30, 0.41, 0.45), start=1):
            logger.info("Epoch {}/3 | Train Loss: {:.4f} | Val Loss: {:.4f} | F1 Macro: {:.4f} | F1 Weighted: 0.5 | "
                        "F1 [S/N/B]: 0.1/0.2/0.3 | LR: 1.000e-03", epoch, 1.0 / epoch, 1.1 / epoch, f1)
            ctx.item_done(f"epoch-{epoch}")
        logger.warning("a warning")
        logger.error("an error")
    report = analyse_run(tmp_path, ctx.run_id)
    assert report.learning_curve["f1_macro"].to_list() == [0.30, 0.41, 0.45]
    assert "Epoch 3/3 | Train Loss" in report.last_progress  # the last progress line of the log
    assert report.timeline["level"].to_list() == ["WARNING", "ERROR"]
    plots = tmp_path / "plots"
    assert plot_learning_curve(report, plots / "lc.png") is not None and (plots / "lc.png").stat().st_size > 1000
    assert plot_timeline(report, plots / "tl.png") is not None
    fig = plot_memory(report, plots / "mem.png")
    fmt = fig.axes[0].xaxis.get_major_formatter()
    label = fmt(mdates.date2num(dt.datetime(2026, 1, 1, 13, 45, 41, 450000, tzinfo=dt.UTC)))
    assert label == "13:45:41"  # not matplotlib's default "45:41.450000"


def test_optimization_trials_give_a_curve(tmp_path):
    with start_run(_params(tmp_path)) as ctx:
        for trial, values in enumerate(((0.2, 0.3), (0.25, 0.5))):
            for epoch, v in enumerate(values, start=1):
                logger.info("Trial {} epoch {}: val/f1_macro={:.4f} F1 [S/N/B]=0.1/0.2/0.3 lr=1e-3", trial, epoch, v)
            logger.info("Trial {} complete (value {}); best so far: x", trial, values[-1])
    report = analyse_run(tmp_path, ctx.run_id)
    assert report.trials["best_so_far"].to_list() == [0.3, 0.5] and report.learning_curve.height == 4
    assert plot_learning_curve(report, tmp_path / "opt.png") is not None
