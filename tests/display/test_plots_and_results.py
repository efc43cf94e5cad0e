"""Plots a person can read inline: full-size post-mortem figures, whole titles, whole-number epochs; no raw frames."""

from __future__ import annotations

import base64
import re
import struct
import types
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from matplotlib.figure import Figure


def _png_widths(html: str) -> list[tuple[int, str]]:
    """(pixel width of the embedded PNG, the img tag) for every inline image."""
    out = []
    for tag in re.findall(r"<img [^>]*>", html):
        data = base64.b64decode(re.search(r"base64,([^'\"]+)", tag).group(1))
        out.append((struct.unpack(">I", data[16:20])[0], tag))
    return out


def test_postmortem_figures_are_shown_at_their_own_readable_size():
    from quantnb.display._html import result_html

    figures = []
    for _ in range(2):
        fig = Figure(figsize=(8, 3.5))
        fig.subplots().plot([0, 1, 2], [1, 3, 2])
        figures.append(fig)
    from quantnb.stages.postmortem import PostmortemResult

    report = types.SimpleNamespace(to_dict=lambda: {"run_id": "etl_x", "status": "completed"})
    images = _png_widths(result_html(PostmortemResult(report, figures)))
    assert len(images) == 2
    for width, tag in images:
        assert width >= 600 and "width=" not in tag, (width, tag)  # not squeezed into 420 px


def test_learning_curve_epochs_and_trials_are_whole_numbers(tmp_path: Path):
    from quantnb.display._postmortem import plot_learning_curve

    curve = pl.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.0, 0.8, 0.7], "val_loss": [1.1, 0.9, 0.85],
                          "f1_macro": [0.3, 0.35, 0.4]})
    report = types.SimpleNamespace(run_id="training_x", learning_curve=curve, trials=pl.DataFrame())
    fig = plot_learning_curve(report, tmp_path / "lc.png")
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    trials = pl.DataFrame({"trial": [0, 1, 2], "value": [0.3, 0.4, 0.35], "best_so_far": [0.3, 0.4, 0.4]})
    opt_curve = pl.DataFrame({"trial": [0, 0, 1], "epoch": [1, 2, 1], "f1_macro": [0.3, 0.32, 0.4]})
    report = types.SimpleNamespace(run_id="optimization_x", learning_curve=opt_curve, trials=trials)
    fig = plot_learning_curve(report, tmp_path / "opt.png")
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        assert all(float(t).is_integer() for t in ax.get_xticks() if lo <= t <= hi), ax.get_xticks()


def test_the_confusion_matrix_title_is_whole_and_clear_of_the_colour_bar(tmp_path: Path, monkeypatch):
    from quantnb.classifier import plot_confusion_matrix

    saved: list[Figure] = []
    original = Figure.savefig

    def keep(self, *args, **kwargs):  # the real savefig; the figure is kept to measure its texts
        saved.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    title = "training_SELL_0004_BUY_0008_30m_20261207_072745: test confusion matrix"
    plot_confusion_matrix(np.array([[120, 30, 10], [40, 900, 35], [12, 28, 140]]), tmp_path / "cm.png", title=title)
    fig = saved[0]
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    texts = [t for t in fig.findobj(lambda a: hasattr(a, "get_text") and "training_SELL" in str(a.get_text()))]
    assert texts, "the run id is in the title"
    for t in texts:
        ext = t.get_window_extent(renderer)
        assert ext.x0 >= box.x0 and ext.x1 <= box.x1 and ext.y1 <= box.y1, (ext, box)  # not clipped
        for ax in fig.axes:
            assert not ext.overlaps(ax.get_window_extent(renderer)), "title runs into the plot or the colour bar"


def test_the_record_result_is_a_summary_not_a_raw_frame(tmp_path: Path):
    from quantnb.stages.record import RecordResult

    report = {"messages": 1234, "msgs_per_s": 200.0, "stopped_by": "stop", "shards": 3, "parquet_rows": 5000,
              "per_symbol": {"BTCUSDT": {"snapshots": 1, "deltas": 1200, "trades": 33, "gaps": 0}}}
    html = RecordResult("record_x", "interrupted", report, tmp_path / "raw", tmp_path / "pq")._repr_html_()
    assert "record_x" in html and "1,234 messages" in html and "stopped by an interrupt or SIGTERM" in html
    assert "BTCUSDT" in html and "1,200" in html and "<table" in html
    assert "shape:" not in html and "<pre>" not in html and "str</td>" not in html


@pytest.mark.parametrize("n", [1, 3])
def test_training_result_shows_the_confusion_matrix_at_its_own_size(tmp_path: Path, n: int):
    from quantnb.classifier import plot_confusion_matrix
    from quantnb.stages.training import TrainingResult

    png = plot_confusion_matrix(np.eye(3, dtype=int) * 10 * n, tmp_path / "cm.png", title="t")
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "f1_macro": 0.3, "is_best": e == 1}
               for e in range(1, n + 1)]
    test = {"f1_macro": 0.41, "f1_weighted": 0.5, "f1_sell": 0.3, "f1_neutral": 0.6, "f1_buy": 0.33}
    html = TrainingResult("training_x", 0.45, test, tmp_path / "model", png, history)._repr_html_()
    widths = _png_widths(html)
    assert len(widths) == 2 and all("width=" not in tag for _, tag in widths), widths
