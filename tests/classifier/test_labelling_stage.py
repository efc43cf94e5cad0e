"""The labelling stage writes t1, uniqueness and return weights per file exactly as on the whole series."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from quantnb.classifier import label_bars, label_events
from quantnb.stages.labelling import LabellingParams, run_labelling
from tests.conftest import make_project

FOLDER = "data/processed/unknown/perp/BTC-PERP"


@pytest.fixture
def etl_project(tmp_path: Path, btc_bars: pl.DataFrame) -> tuple[Path, pl.DataFrame]:
    """Four days of the real month as the ETL writes them: one Parquet per UTC day with gap_before."""
    root = make_project(tmp_path / "proj")
    bars = btc_bars.filter(pl.col("ts").dt.date() <= pl.date(2022, 1, 3)).with_columns(gap_before=pl.lit(False))
    out = root / FOLDER
    out.mkdir(parents=True)
    for (day,), frame in bars.group_by(pl.col("ts").dt.date(), maintain_order=True):
        frame.write_parquet(out / f"{day}.parquet")
    return root, bars


def read_dir(folder: Path) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(f) for f in sorted(folder.glob("*.parquet"))])


def test_fixed_horizon_stage_keeps_todays_labels_and_adds_exact_weights(etl_project) -> None:
    root, bars = etl_project
    res = run_labelling(LabellingParams(project_dir=str(root), input_glob=f"{FOLDER}/*.parquet", n_workers=1,
                                        console_level=None))
    assert res.status == "completed" and res.output_dir.name == "SELL_0004_BUY_0008_1h"
    got = read_dir(res.output_dir)
    today = label_bars(bars, 60, -0.004, 0.008)
    assert got.select(today.columns).equals(today)  # the labels of before, to the byte
    whole = label_events(bars, "fixed_horizon", lookahead_min=60)
    assert got.select("ts", "t1").equals(whole.select("ts", "t1"))
    metrics = json.loads((root / "runs" / res.run_id / "run.json").read_text())["metrics"]
    assert metrics["mean_uniqueness"] == pytest.approx(whole["uniqueness"].mean(), abs=1e-6)  # rounded to 6 places
    assert metrics["mean_uniqueness"] == pytest.approx(1 / 60, rel=0.05)  # 1-hour labels on every minute
    assert res.distribution["effective_labels"].sum() == pytest.approx(whole["uniqueness"].sum())
    for col in ("uniqueness", "return_weight"):  # per file as on the whole series (prefix sums: rounding only)
        assert got[col].to_numpy() == pytest.approx(whole[col].to_numpy(), rel=1e-9, abs=1e-15)


def test_triple_barrier_stage_labels_across_files_as_on_the_whole_series(etl_project) -> None:
    root, bars = etl_project
    res = run_labelling(LabellingParams(project_dir=str(root), input_glob=f"{FOLDER}/*.parquet", n_workers=1,
                                        console_level=None, method="triple_barrier", max_holding_min=120,
                                        profit_take_mult=1.5, stop_loss_mult=1.0, vol_span_min=30))
    assert res.status == "completed" and res.output_dir.name == "TB_PT1p5_SL1_VOL30m_2h"
    got = read_dir(res.output_dir)
    whole = label_events(bars, "triple_barrier", max_holding_min=120, profit_take_mult=1.5, stop_loss_mult=1.0,
                         vol_span_min=30)
    cols = ["ts", "label", "t1", "barrier", "fwd_return"]
    assert got.select(cols).equals(whole.select(cols))
    assert got["uniqueness"].to_numpy() == pytest.approx(whole["uniqueness"].to_numpy(), rel=1e-9)
    assert got.schema["t1"] == pl.Datetime("us", "UTC")
    config = json.loads((res.output_dir / "labelling_config.json").read_text())
    assert config["method"] == "triple_barrier" and config["lookahead_min"] == 120  # the embargo of later splits


def test_cusum_events_get_their_own_folder(etl_project) -> None:
    root, _ = etl_project
    res = run_labelling(LabellingParams(project_dir=str(root), input_glob=f"{FOLDER}/*.parquet", n_workers=1,
                                        console_level=None, cusum_threshold=0.005))
    assert res.output_dir.name == "SELL_0004_BUY_0008_1h_CUSUM0005"
    got = read_dir(res.output_dir)
    assert 50 < got.height < 500 and ((got["uniqueness"] > 0.0) & (got["uniqueness"] <= 1.0)).all()


def test_a_broken_previous_file_is_quarantined_and_gives_no_context(etl_project) -> None:
    root, bars = etl_project
    bars.head(10).drop("close").write_parquet(root / FOLDER / "0000_no_close.parquet")  # sorts before the days
    res = run_labelling(LabellingParams(project_dir=str(root), input_glob=f"{FOLDER}/*.parquet", n_workers=1,
                                        console_level=None, method="triple_barrier"))
    assert res.status == "completed_with_errors" and list(res.quarantined) == [f"{FOLDER}/0000_no_close.parquet"]
    whole = label_events(bars, "triple_barrier")
    assert read_dir(res.output_dir).select("ts", "label", "t1").equals(whole.select("ts", "label", "t1"))


@pytest.mark.slow
def test_training_on_triple_barrier_labels_with_uniqueness_weights(etl_project) -> None:
    from quantnb.stages.training import TrainingParams, run_training

    root, _ = etl_project
    lab = run_labelling(LabellingParams(project_dir=str(root), input_glob=f"{FOLDER}/*.parquet", n_workers=1,
                                        console_level=None, method="triple_barrier", max_holding_min=30))
    labelled = lab.output_dir.relative_to(root).as_posix()
    small = {"tcn_channels": 4, "kernel_size": 2, "n_blocks": 1, "dropout": 0.0, "lstm_hidden": 4,
             "lstm_layers": 1, "seq_len": 8, "lr": 1e-2, "batch_size": 512, "epochs": 1, "num_threads": 1}
    runs = {}
    for weight in (None, "uniqueness"):
        res = run_training(TrainingParams(project_dir=str(root), labelled_dir=labelled, console_level=None,
                                          sample_weight_col=weight, **small))
        runs[weight] = json.loads((root / "runs" / res.run_id / "run.json").read_text())
    assert all(r["status"] == "completed" for r in runs.values())
    assert runs[None]["results"] != runs["uniqueness"]["results"]  # the weights reach the loss
