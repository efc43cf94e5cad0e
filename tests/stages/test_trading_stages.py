from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import make_project, run_cli

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
def test_agent_then_replay_session_audit_emergency_and_no_secret_anywhere(tmp_path):
    root, train_id = _agent_bundle(tmp_path)
    agent_dir = root / "runs" / train_id
    for name in ("config_metadata.yaml", "scaler.json", "sac_model.zip"):
        assert (agent_dir / name).exists(), name
    assert (root / "debug_plots" / train_id / "equity_curve.png").exists()
    agent_record = json.loads((agent_dir / "run.json").read_text())
    eval_start = agent_record["results"]["eval_start"]

    live = _run(root, "run", "live", "-p", "train_id", train_id)
    assert live.returncode == 0, live.stdout + live.stderr
    (live_dir,) = (root / "runs").glob("live_*")
    record = json.loads((live_dir / "run.json").read_text())
    assert record["status"] == "completed" and record["results"]["stopped_by"] == "end_of_data"
    (registro,) = (agent_dir / "produccion").glob("registro_*.csv")
    rows = list(csv.DictReader(registro.open()))
    assert len(rows) == record["results"]["steps"] > 0
    bar_ts = [r["bar_ts"] for r in rows]
    assert len(set(bar_ts)) == len(bar_ts) and bar_ts == sorted(bar_ts)  # one row per closed bar
    assert bar_ts[0][:16] >= eval_start.replace(" ", "T")[:16]
    assert list(rows[0]) == ["timestamp", "step", "bar_ts", "close", "action_raw", "target_frac", "side", "qty",
                             "fill_price", "fee_usd", "position", "balance_usd", "equity_usd", "peak_equity_usd",
                             "drawdown_frac", "decision_latency_ms"]
    assert list((agent_dir / "produccion").glob("produccion_*.log"))

    breach = _run(root, "run", "live", "-p", "train_id", train_id, "-p", "max_drawdown_frac", "0.0001",
                  "-p", "fee_bps", "50")
    assert breach.returncode == 0, breach.stdout + breach.stderr
    (emerg,) = (agent_dir / "produccion").glob("emergencias_*.csv")
    erows = list(csv.DictReader(emerg.open()))
    assert len(erows) == 1 and "drawdown" in erows[0]["cause"]
    breach_dir = max((root / "runs").glob("live_*"),
                     key=lambda p: json.loads((p / "run.json").read_text())["started_at"])
    brec = json.loads((breach_dir / "run.json").read_text())
    assert brec["status"] == "completed_with_errors" and brec["results"]["stopped_by"] != "end_of_data"

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
