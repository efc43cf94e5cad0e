"""Meta-labels through the labelling stage, and a secondary model through the training stage."""

from __future__ import annotations

import json

import polars as pl
import pytest

from quantnb.classifier import label_events, prepare_datasets
from quantnb.stages.labelling import LabellingParams, run_labelling
from tests.classifier.test_labelling_stage import FOLDER, etl_project, read_dir

__all__ = ["etl_project"]  # the fixture, shared with the labelling stage's tests

META = {"method": "meta", "max_holding_min": 30, "momentum_min": 30, "vol_span_min": 30, "meta_cost_bps": 11.0}
SMALL = {"tcn_channels": 4, "kernel_size": 2, "n_blocks": 1, "dropout": 0.0, "lstm_hidden": 4, "lstm_layers": 1,
         "seq_len": 8, "lr": 1e-2, "batch_size": 512, "epochs": 1, "num_threads": 1}


def test_meta_stage_labels_across_files_as_on_the_whole_series(etl_project) -> None:
    root, bars = etl_project
    res = run_labelling(LabellingParams(project_dir=str(root), input_glob=f"{FOLDER}/*.parquet", n_workers=1,
                                        console_level=None, **META))
    assert res.status == "completed" and res.output_dir.name == "META_MOM30m_PT1_SL1_VOL30m_30m_COST11"
    got = read_dir(res.output_dir)
    assert got.height == bars.height  # every bar, side 0 and no label where the primary has no bet
    whole = label_events(bars, **META, keep_unlabelled=True)
    cols = ["ts", "side", "label", "t1", "barrier", "trade_return"]
    assert got.select(cols).equals(whole.select(cols))  # the momentum side and barriers see the previous file
    labelled = whole.filter(pl.col("label").is_not_null())
    assert labelled.height > 0.9 * bars.height and labelled.select(cols).equals(label_events(bars, **META).select(cols))
    assert got["uniqueness"].drop_nulls().to_numpy() == pytest.approx(labelled["uniqueness"].to_numpy(), rel=1e-9)
    assert res.distribution.columns == ["file", "SKIP", "TAKE", "effective_labels"]
    assert res.distribution["SKIP"].sum() + res.distribution["TAKE"].sum() == labelled.height
    config = json.loads((res.output_dir / "labelling_config.json").read_text())
    assert config["method"] == "meta" and config["lookahead_min"] == 30 and config["meta_cost_bps"] == 11.0


def test_a_bad_side_column_quarantines_its_file_and_the_others_are_labelled(etl_project) -> None:
    root, bars = etl_project
    files = sorted((root / FOLDER).glob("*.parquet"))
    for i, path in enumerate(files):
        frame = pl.read_parquet(path)
        side = [1 if k % 7 == 0 else 0 for k in range(frame.height)]
        if i == 1:
            side[-1] = 3  # a bad side in the second file, in the tail the third file reads as context
        frame.with_columns(signal=pl.Series(side)).write_parquet(path)
    res = run_labelling(LabellingParams(project_dir=str(root), input_glob=f"{FOLDER}/*.parquet", n_workers=1,
                                        console_level=None, method="meta", side_rule="column", side_col="signal",
                                        max_holding_min=30, vol_span_min=30))
    assert res.status == "completed_with_errors" and list(res.quarantined) == [f"{FOLDER}/{files[1].name}"]
    reason = res.quarantined[f"{FOLDER}/{files[1].name}"]
    assert f"{files[1]}: bar 2022-01-01 23:59:00+00:00 field signal: side 3; a side must be -1" in reason
    assert res.output_dir.name == "META_COLsignal_PT1_SL1_VOL30m_30m"
    assert len(list(res.output_dir.glob("*.parquet"))) == len(files) - 1


def test_training_a_secondary_model_on_meta_labels_reports_precision_and_sizing(etl_project, capsys) -> None:
    from quantnb.classifier import load_model_bundle
    from quantnb.stages.training import TrainingParams, run_training

    root, _ = etl_project
    lab = run_labelling(LabellingParams(project_dir=str(root), input_glob=f"{FOLDER}/*.parquet", n_workers=1,
                                        console_level=None, **META))
    res = run_training(TrainingParams(project_dir=str(root), labelled_dir=lab.output_dir.relative_to(root).as_posix(),
                                      console_level=None, **SMALL))
    t = res.test
    assert len(t["confusion"]) == 2 and {"f1_skip", "f1_take"} <= set(t) and "f1_sell" not in t
    assert t["f1_macro"] == pytest.approx((t["f1_skip"] + t["f1_take"]) / 2)  # over 2 classes, not 3
    assert set(t["baselines"]) == {"persistence", "majority", "take_all"}
    assert t["baselines"]["take_all"]["f1_macro"] == pytest.approx(  # F1(SKIP) = 0, F1(TAKE) = 2 q / (1 + q)
        (2 * t["meta"]["take_all"]["baseline_precision"] / (1 + t["meta"]["take_all"]["baseline_precision"])) / 2)
    take_all = t["meta"]["take_all"]
    labels = pl.concat([pl.read_parquet(f) for f in sorted(lab.output_dir.glob("*.parquet"))])
    assert 0 < take_all["baseline_precision"] < 1 and labels["label"].mean() == pytest.approx(
        take_all["baseline_precision"], abs=0.1)  # the primary's own hit rate, on the test windows
    assert take_all["diff_ci_low"] is None or take_all["diff_ci_low"] <= take_all["diff_ci_high"]
    sizing = t["meta"]["sizing"]
    assert sizing["n_signals"] == t["n_samples"] and sizing["cost_bps"] == 11.0
    data = prepare_datasets(labels, seq_len=8, train_frac=0.7, val_frac=0.15, lookahead_min=30,
                            extra_features=("side",))
    tested = data.splits.test["trade_return"].to_numpy()[data.test.ends]  # the primary's bets of the test windows
    assert sizing["unsized_return_per_trade"] == pytest.approx(tested.mean() - 11e-4, rel=1e-9)
    assert load_model_bundle(res.bundle_dir).features[-1] == "side"  # the secondary sees the primary's side
    run = json.loads((root / "runs" / res.run_id / "run.json").read_text())
    assert run["status"] == "completed" and "sizing" in run["metrics"]["meta"]
    res.summary()
    printed = capsys.readouterr().out
    assert "SKIP/TAKE" in printed and "always taking the primary's side" in printed
    assert "Net return per trade" in printed
    html = res._repr_html_()
    assert "Meta-labelling (test split" in html and "precision on TAKE" in html and "net return per trade" in html
    from quantnb.errors import ConfigError
    from quantnb.stages.optimization import OptimizationParams, run_optimization

    with pytest.raises(ConfigError, match="meta-labels .* not searched by the optimization stage"):
        run_optimization(OptimizationParams(project_dir=str(root), console_level=None, n_trials=1,
                                            labelled_dir=lab.output_dir.relative_to(root).as_posix()))

