from __future__ import annotations

import csv
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import QUANTNB, make_project, run_cli

FAKE_ENV = {"QUANTNB_BINANCE_API_KEY": "fakeKEY-7d1e0c55aa93b2",
            "QUANTNB_BINANCE_API_SECRET": "fakeSECRET-41f0e9d8c7b6a5"}


def _run(root: Path, *args: str):
    res = run_cli(*args, cwd=root, env=FAKE_ENV)
    return res


def _agent_bundle(tmp_path: Path) -> tuple[Path, str]:
    """ETL of the BTC-PERP month, then a tiny SAC agent through the runner; return (root, train_id)."""
    root = make_project(tmp_path / "proj")
    etl = _run(root, "run", "etl", "-p", "input_globs", '["data/samples/ohlcv/*.csv"]', "-p", "n_workers", "1")
    assert etl.returncode == 0, etl.stdout + etl.stderr
    agent = _run(root, "run", "agent", "-p", "bars_glob", "data/processed/unknown/perp/BTC-PERP/2022-01-[23]*.parquet",
                 "-p", "eval_days", "1", "-p", "window", "8", "-p", "total_timesteps", "300",
                 "-p", "buffer_size", "300", "-p", "learning_starts", "100", "-p", "checkpoint_every_steps", "100",
                 "-p", "progress_every_steps", "100", "-p", "net_arch", "[16, 16]", "-p", "batch_size", "64")
    assert agent.returncode == 0, agent.stdout + agent.stderr
    (agent_dir,) = (root / "runs").glob("agent_*")
    return root, agent_dir.name


@pytest.mark.slow
def test_agent_then_replay_session_audit_emergency_and_no_secret_anywhere(agent_project):
    root, train_id = agent_project
    agent_dir = root / "runs" / train_id
    for name in ("config_metadata.yaml", "scaler.json", "sac_model.zip"):
        assert (agent_dir / name).exists(), name
    assert (root / "debug_plots" / train_id / "equity_curve.png").exists()
    agent_record = json.loads((agent_dir / "run.json").read_text())
    eval_start = agent_record["results"]["eval_start"]
    assert agent_record["test_spans"][0]["what"] == "agent fold 0"
    assert agent_record["metrics"]["test_span_evaluations"] == 0

    live = _run(root, "run", "live", "-p", "train_id", train_id)
    assert live.returncode == 0, live.stdout + live.stderr
    (live_dir,) = (root / "runs").glob("live_*")
    record = json.loads((live_dir / "run.json").read_text())
    assert record["status"] == "completed" and record["results"]["stopped_by"] == "end_of_data"
    assert record["results"]["test_span_runs"] == [train_id]  # the replay span is the agent's evaluation span
    (registro,) = (agent_dir / "produccion").glob("registro_*.csv")
    rows = [r for r in csv.DictReader(registro.open()) if r["event"] == "bar"]
    assert len(rows) == record["results"]["steps"] > 0
    bar_ts = [r["bar_ts"] for r in rows]
    assert len(set(bar_ts)) == len(bar_ts) and bar_ts == sorted(bar_ts)  # one row per closed bar
    assert bar_ts[0][:16] >= eval_start.replace(" ", "T")[:16]
    assert list(rows[0]) == ["timestamp", "step", "bar_ts", "close", "action_raw", "target_frac", "side", "qty",
                             "fill_price", "fee_usd", "position", "balance_usd", "equity_usd", "peak_equity_usd",
                             "drawdown_frac", "decision_latency_ms", "event", "client_order_id", "gap_before", "note",
                             "funding_usd"]
    assert list((agent_dir / "produccion").glob("produccion_*.log"))

    breach = _run(root, "run", "live", "-p", "train_id", train_id, "-p", "max_drawdown_frac", "0.0001",
                  "-p", "fee_bps", "50")  # the first replay completed: this is a new session
    assert breach.returncode == 1, breach.stdout + breach.stderr  # an emergency is a failed session
    (emerg,) = (agent_dir / "produccion").glob("emergencias_*.csv")
    erows = list(csv.DictReader(emerg.open()))
    assert len(erows) == 1 and "drawdown" in erows[0]["cause"]
    breach_dir = max((root / "runs").glob("live_*"),
                     key=lambda p: json.loads((p / "run.json").read_text())["started_at"])
    brec = json.loads((breach_dir / "run.json").read_text())
    assert brec["status"] == "failed" and brec["results"]["stopped_by"] == "emergency:drawdown"
    assert brec["metrics"]["test_span_evaluations"] == 2  # the agent's evaluation and the first replay

    again = _run(root, "run", "live", "-p", "train_id", train_id)
    assert again.returncode == 1
    assert "HALTED_DRAWDOWN" in again.stderr + again.stdout

    leaked = []
    for path in root.rglob("*"):
        if path.is_file() and "samples" not in path.parts:
            data = path.read_bytes()
            if any(v.encode() in data for v in FAKE_ENV.values()):
                leaked.append(str(path))
    assert not leaked, leaked


def test_live_mode_without_confirmation_is_refused_before_anything_runs(tmp_path):
    root = make_project(tmp_path / "proj")
    res = run_cli("run", "live", "-p", "train_id", "any", "-p", "mode", "live", cwd=root)
    assert res.returncode == 2 and "set confirm_live=True" in res.stderr
    typo = run_cli("run", "live", "-p", "train_id", "any", "-p", "mode", "live", "-p", "confirm_lve", "true", cwd=root)
    assert typo.returncode == 2 and "did you mean 'confirm_live'" in typo.stderr
    assert not any((root / "runs").iterdir()) if (root / "runs").exists() else True


# --- crash safety of the live stage (issue 7, sections 4 and 5) -------------------------------------------------------
N_TRAIN, N_REPLAY = 500, 120
SAC_ID, LONG_ID = "agent_tiny_20240101_000000", "agent_long_20240101_000000"


@pytest.fixture(scope="module")
def tiny_bundles(tmp_path_factory):
    """Two agent bundles trained in-process on the real month (a SAC agent, and one always fully long)."""
    from tests.live._helpers import sample_bars, save_tiny_bundle

    base = tmp_path_factory.mktemp("bundles")
    bars = sample_bars(N_TRAIN + N_REPLAY)
    split = bars["ts"][N_TRAIN]
    save_tiny_bundle(base / SAC_ID, bars, split)
    save_tiny_bundle(base / LONG_ID, bars, split, always_long=True, learn_steps=60)
    return base, bars, split


def _live_project(tmp_path: Path, name: str, tiny_bundles, bars=None) -> Path:
    base, all_bars, _ = tiny_bundles
    root = make_project(tmp_path / name)
    for train_id in (SAC_ID, LONG_ID):
        shutil.copytree(base / train_id, root / "runs" / train_id)
    out = root / "data" / "processed" / "replay"
    out.mkdir(parents=True)
    (all_bars if bars is None else bars).write_parquet(out / "bars.parquet")
    return root


def _live_args(train_id: str, split, *extra: str) -> list[str]:
    return ["run", "live", "-p", "train_id", train_id, "-p", "replay_glob", "data/processed/replay/*.parquet",
            "-p", "replay_start", f"'{split.isoformat()}'", *extra]


def _registro_content(root: Path, train_id: str) -> list[dict]:
    (path,) = (root / "runs" / train_id / "produccion").glob("registro_*.csv")
    with path.open(newline="") as fh:  # wall-clock columns and the session's order tag are bookkeeping
        return [{k: (re.sub(r"^qnb-[0-9a-f]+-", "qnb-*-", v) if k == "client_order_id" else v)
                 for k, v in r.items() if k not in ("timestamp", "decision_latency_ms")} for r in csv.DictReader(fh)]


def _state(root: Path, train_id: str) -> dict:
    """The newest recorded replay state (snapshot or journal line), read while the trader writes; {} if none."""
    from quantnb.live import read_latest_state

    state = read_latest_state(root / "runs" / train_id / "produccion", "replay")
    return {} if state is None else json.loads(state.to_json())


@pytest.mark.slow
def test_live_replay_killed_at_random_points_then_restarted_matches_an_uninterrupted_replay(tmp_path, tiny_bundles):
    from tests.stages.test_etl_stage import _kill_tree

    split = tiny_bundles[2]
    ref_root = _live_project(tmp_path, "ref", tiny_bundles)
    ref = _run(ref_root, *_live_args(SAC_ID, split))
    assert ref.returncode == 0, ref.stdout + ref.stderr
    reference = _registro_content(ref_root, SAC_ID)
    assert len(reference) == N_REPLAY and sum(1 for r in reference if r["side"]) > 3

    root = _live_project(tmp_path, "killed", tiny_bundles)
    rng = random.Random(20240101)
    args = _live_args(SAC_ID, split, "-p", "replay_speed", "1500")  # 40 ms a bar: time to kill mid-session
    for target in sorted(rng.sample(range(3, N_REPLAY - 10), 2)):
        proc = subprocess.Popen([QUANTNB, *args], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, **FAKE_ENV})
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and _state(root, SAC_ID).get("step", -1) < target:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.04))  # anywhere inside a step: before, between or after its writes
        assert proc.poll() is None, "the session ended before it could be killed"
        _kill_tree(proc.pid)  # runner and kernel, SIGKILL
    killed_at = _state(root, SAC_ID)["step"]
    assert 3 <= killed_at < N_REPLAY
    final = _run(root, *args)
    assert final.returncode == 0, final.stdout + final.stderr
    assert _registro_content(root, SAC_ID) == reference
    state, ref_state = _state(root, SAC_ID), _state(ref_root, SAC_ID)
    assert state["paper"] == ref_state["paper"] and state["peak_equity_usd"] == ref_state["peak_equity_usd"]
    assert state["restarts"] == 2 and state["completed"] is True
    recon = list((root / "runs" / SAC_ID / "produccion").glob("reconciliacion_*.csv"))
    assert len(recon) == 1 and len(recon[0].read_text().splitlines()) >= 1 + 2  # one resume row per restart


@pytest.mark.slow
def test_sigterm_flatten_fill_is_in_the_registro_and_counted(tmp_path, tiny_bundles):
    split = tiny_bundles[2]
    root = _live_project(tmp_path, "term", tiny_bundles)
    proc = subprocess.Popen([QUANTNB, *_live_args(LONG_ID, split, "-p", "replay_speed", "1500")], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and _state(root, LONG_ID).get("step", -1) < 5:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, out + err
    rows = _registro_content(root, LONG_ID)
    assert rows[0]["side"] == "buy" and rows[-1]["event"] == "stop_flatten"
    assert rows[-1]["side"] == "sell" and float(rows[-1]["qty"]) > 0 and float(rows[-1]["position"]) == 0.0
    (live_dir,) = (root / "runs").glob("live_*")
    results = json.loads((live_dir / "run.json").read_text())["results"]
    assert results["flattened_on_stop"] is True and results["trades"] == sum(1 for r in rows if r["side"])
    assert results["fees_usd"] == pytest.approx(sum(float(r["fee_usd"]) for r in rows))


@pytest.mark.slow
def test_repeated_bad_bars_end_the_session_in_an_emergency_with_a_non_zero_exit(tmp_path, tiny_bundles):
    _, bars, split = tiny_bundles
    bad = N_TRAIN + 20
    spoiled = bars.with_columns(pl.when(pl.int_range(pl.len()).is_between(bad, bad + 2)).then(float("nan"))
                                .otherwise(pl.col("close")).alias("close"))
    root = _live_project(tmp_path, "bad", tiny_bundles, bars=spoiled)
    res = _run(root, *_live_args(LONG_ID, split))
    assert res.returncode == 1, res.stdout + res.stderr
    (live_dir,) = (root / "runs").glob("live_*")
    record = json.loads((live_dir / "run.json").read_text())
    assert record["status"] == "failed" and record["results"]["stopped_by"] == "emergency:bad_data"
    assert "emergency: bad_data" in record["error"]
    rows = _registro_content(root, LONG_ID)
    assert [r["event"] for r in rows[-4:]] == ["rejected"] * 3 + ["emergency_close"]
    assert "field close=nan" in rows[-2]["note"] and float(rows[-1]["position"]) == 0.0
    (emerg,) = (root / "runs" / LONG_ID / "produccion").glob("emergencias_*.csv")
    assert list(csv.DictReader(emerg.open()))[0]["flat_confirmed"] == "True"
