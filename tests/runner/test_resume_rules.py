"""``--resume`` refuses a run still going (any stage) and a run with other parameters, touching nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from quantnb.config import StageParams
from quantnb.errors import ConfigError
from quantnb.runner._execute import resolve_params
from quantnb.runs import start_run
from quantnb.stages import STAGES
from tests.conftest import make_project, run_cli

SLEEPER = Path(__file__).parents[1] / "runs" / "_sleeper.py"


class SleeperParams(StageParams):
    stage = "sleeper"


@pytest.fixture
def live_run(tmp_path: Path) -> Iterator[tuple[Path, str, int]]:
    """A run whose process is alive: project root, run id, pid."""
    root = make_project(tmp_path / "proj")
    proc = subprocess.Popen([sys.executable, str(SLEEPER), str(root)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("READY"), (line, proc.stderr.read() if proc.poll() is not None else "")  # type: ignore[union-attr]
        yield root, line.split()[1], proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


def _as_stage(root: Path, run_id: str, stage: str) -> tuple[str, bytes]:
    """The live run's record under a run of ``stage`` (same live pid and create time)."""
    rec = json.loads((root / "runs" / run_id / "run.json").read_text())
    target = root / "runs" / f"{stage}_live"
    target.mkdir(parents=True, exist_ok=True)
    (target / "run.json").write_text(json.dumps({**rec, "stage": stage, "run_id": target.name}))
    return target.name, (target / "run.json").read_bytes()


def test_resuming_a_live_run_is_refused_for_every_stage_naming_the_pid(live_run):
    root, run_id, pid = live_run
    for stage in sorted(STAGES):
        rid, before = _as_stage(root, run_id, stage)
        with pytest.raises(ConfigError, match=rf"still running in process {pid}\b.*kill -TERM {pid}"):
            resolve_params(stage, resume_run_id=rid, root=root)
        assert (root / "runs" / rid / "run.json").read_bytes() == before
    rid, before = _as_stage(root, run_id, "etl")
    res = run_cli("run", "etl", "--resume", rid, cwd=root)
    assert res.returncode == 2 and f"still running in process {pid}" in res.stderr, res.stderr[-2000:]
    assert (root / "runs" / rid / "run.json").read_bytes() == before
    assert sorted(p.name for p in (root / "runs" / rid).iterdir()) == ["run.json"]  # no notebook, no attempt


def test_a_notebook_naming_a_live_run_is_refused_and_resume_true_starts_its_own(live_run):
    root, run_id, pid = live_run
    before = (root / "runs" / run_id / "run.json").read_bytes()
    with pytest.raises(ConfigError, match=rf"still running in process {pid}"):
        start_run(SleeperParams(project_dir=str(root), console_level=None, run_id=run_id, resume=True))
    assert (root / "runs" / run_id / "run.json").read_bytes() == before
    with start_run(SleeperParams(project_dir=str(root), console_level=None, resume=True)) as ctx:
        assert ctx.run_id != run_id and not ctx.resumed  # does not join the live run
    assert (root / "runs" / run_id / "run.json").read_bytes() == before


def test_a_refused_resume_with_changed_parameters_leaves_the_finished_run_alone(tmp_path):
    from quantnb.stages.etl import EtlParams

    root = make_project(tmp_path / "proj")
    with start_run(EtlParams(project_dir=str(root), console_level=None, ohlcv_market="perp")) as ctx:
        ctx.set_total(0)
    run_dir = root / "runs" / ctx.run_id
    before = (run_dir / "run.json").read_bytes()
    assert json.loads(before)["status"] == "completed"
    res = run_cli("run", "etl", "--resume", ctx.run_id, "-p", "ohlcv_market", "spot", cwd=root)
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert "other parameters (ohlcv_market differ)" in res.stderr and "Traceback" not in res.stderr
    assert (run_dir / "run.json").read_bytes() == before
    assert sorted(p.name for p in run_dir.iterdir()) == ["run.json"]
    params, _ = resolve_params("etl", overrides={"n_workers": 1}, resume_run_id=ctx.run_id, root=root)
    assert params.n_workers == 1 and params.run_id == ctx.run_id  # an execution field may change
