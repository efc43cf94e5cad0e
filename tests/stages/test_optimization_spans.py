"""The test-span counter: stages record the span they score in run.json and count earlier looks at it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quantnb.runs import earlier_span_runs, span_evaluations
from quantnb.stages.optimization import OptimizationParams, run_optimization
from quantnb.stages.training import TrainingParams, run_training
from tests.stages._opt_child import SMALL_STUDY

TINY = {"tcn_channels": [4], "lstm_hidden": [8], "seq_len": [8], "batch_size": [512], "epochs_per_trial": 1}


def _record(root: Path, run_id: str) -> dict:
    return json.loads((root / "runs" / run_id / "run.json").read_text())


def _optimize(root: Path, labelled: str, name: str, **over) -> dict:
    params = OptimizationParams(project_dir=str(root), labelled_dir=labelled, console_level=None, n_trials=1,
                                study_name=name, **{**SMALL_STUDY, **TINY, **over})
    return _record(root, run_optimization(params).run_id)


def _train(root: Path, labelled: str) -> dict:
    params = TrainingParams(project_dir=str(root), labelled_dir=labelled, console_level=None, epochs=1, seq_len=8,
                            tcn_channels=4, lstm_hidden=8, batch_size=512, num_threads=1)
    return _record(root, run_training(params).run_id)


def _session_log(root: Path, rec: dict) -> str:
    return (root / rec["log"]).read_text()


@pytest.mark.slow
def test_stages_count_earlier_runs_that_scored_an_overlapping_span_of_the_same_instrument(labelled_project):
    root, labelled = labelled_project
    first = _optimize(root, labelled, "a")
    assert first["metrics"]["test_span_evaluations"] == 0
    (span,) = first["test_spans"]
    assert span["what"] == "selection" and span["stage"] == "optimization"
    assert "looked at" not in _session_log(root, first)

    trained = _train(root, labelled)  # the test split lies after the validation span and its embargo
    (test_span,) = trained["test_spans"]
    assert test_span["what"] == "test split" and test_span["start"] > span["end"]
    assert trained["metrics"]["test_span_evaluations"] == 0
    again = _train(root, labelled)
    assert again["metrics"]["test_span_evaluations"] == 1 and again["results"]["test_span_runs"] == [trained["run_id"]]
    assert "This test span has been looked at 1 times before: treat its result as in-sample for selection" in \
        _session_log(root, again)

    cv = _optimize(root, labelled, "c", cv_folds=2)  # scores train + validation: overlaps the first selection
    assert cv["test_spans"][0]["start"] < span["start"]
    assert cv["metrics"]["test_span_evaluations"] == 1 and cv["results"]["test_span_runs"] == [first["run_id"]]
    best = json.loads((root / cv["outputs"]["best_params"]).read_text())
    assert best["test_span_evaluations"] == 1

    evs = span_evaluations(root)
    assert {e.run_id for e in evs} == {r["run_id"] for r in (first, trained, again, cv)}
    instrument = span["instrument"]
    assert earlier_span_runs(root, instrument=instrument, spans=[(span["start"], span["end"])],
                             stage="training") == []
    assert earlier_span_runs(root, instrument="ETHUSDT", spans=[(span["start"], span["end"])]) == []
    assert set(earlier_span_runs(root, instrument=instrument, spans=[(test_span["start"], test_span["end"])])) \
        == {trained["run_id"], again["run_id"]}


def test_a_span_on_another_instrument_or_an_unreadable_entry_is_not_counted(tmp_path):
    from tests.conftest import make_project

    root = make_project(tmp_path / "p")
    for run_id, spans in (("agent_x_20220101_000000", [{"instrument": "ETHUSDT", "start": "2022-01-01T00:00:00",
                                                        "end": "2022-01-02T00:00:00", "what": "agent fold 0"}]),
                          ("agent_y_20220101_000001", [{"instrument": "BTCUSDT", "start": "not a time",
                                                        "end": "2022-01-02T00:00:00"}]),
                          ("agent_z_20220101_000002", [{"instrument": "BTCUSDT", "start": "2022-01-01T12:00:00Z",
                                                        "end": "2022-01-01T13:00:00Z"}])):
        (root / "runs" / run_id).mkdir(parents=True)
        (root / "runs" / run_id / "run.json").write_text(json.dumps({
            "run_id": run_id, "stage": "agent", "status": "completed", "started_at": "2022-01-03T00:00:00+00:00",
            "test_spans": spans}))
    assert earlier_span_runs(root, instrument="BTCUSDT", spans=[("2022-01-01T00:00", "2022-01-01T12:00")]) \
        == ["agent_z_20220101_000002"]  # ends touch: the span shares the minute 12:00
    assert earlier_span_runs(root, instrument="BTCUSDT", spans=[("2022-01-01T13:01", "2022-01-02T00:00")]) == []
