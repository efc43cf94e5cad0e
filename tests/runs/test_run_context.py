from __future__ import annotations

import asyncio
import json
import time
import zipfile

import pytest
from loguru import logger

from quantnb.config import StageParams
from quantnb.errors import ConfigError
from quantnb.runs import read_heartbeat, start_run
from quantnb.runs._workflow import AsyncWorkflowSession, WorkflowSession, log_workflow


class DemoParams(StageParams):
    stage = "demo"
    alpha: float = 0.5
    n_workers: int = 1


def test_resume_skips_completed_items_and_continues_the_same_log(tmp_path):
    p = DemoParams(project_dir=str(tmp_path), console_level=None)
    with pytest.raises(KeyboardInterrupt):
        with start_run(p) as ctx:
            ctx.set_total(3)
            for item in ("a", "b"):
                ctx.checkpoint.mark_completed(item)
                ctx.item_done(item, events=10)
            raise KeyboardInterrupt("simulated SIGINT")
    first_id, log_path = ctx.run_id, ctx.log_path
    rec = json.loads((tmp_path / "runs" / first_id / "run.json").read_text())
    assert rec["status"] == "interrupted"
    # a different execution-only field (n_workers) does not change the config, so resume finds it
    p2 = DemoParams(project_dir=str(tmp_path), console_level=None, resume=True, n_workers=4)
    with start_run(p2) as ctx2:
        assert ctx2.run_id == first_id and ctx2.resumed
        todo = [i for i in ("a", "b", "c") if not ctx2.checkpoint.is_completed(i)]
        assert todo == ["c"]
        ctx2.checkpoint.mark_completed("c")
    assert ctx2.log_path == log_path
    text = log_path.read_text()
    assert "Starting run" in text and "Resuming run" in text  # one file, continued
    ckpt = json.loads((tmp_path / "logs" / "checkpoints" / f"{first_id}_completed.json").read_text())
    assert ckpt["completed"] == ["a", "b", "c"] and ckpt["status"] == "completed"
    hb = read_heartbeat(tmp_path / "logs" / "heartbeats" / f"{first_id}_heartbeat.json")
    assert hb["status"] == "completed" and hb["progress_pct"] == 100.0


def test_resume_with_other_parameters_is_refused(tmp_path):
    with start_run(DemoParams(project_dir=str(tmp_path), console_level=None)) as ctx:
        pass
    with pytest.raises(ConfigError, match="other parameters"):
        start_run(DemoParams(project_dir=str(tmp_path), alpha=0.9, run_id=ctx.run_id))
    with pytest.raises(ConfigError, match="no runs/nope/run.json"):
        start_run(DemoParams(project_dir=str(tmp_path), run_id="nope"))


def test_notebook_namespace_with_misspelt_parameter_is_refused():
    namespace = {"alpha": 0.1, "alpah": 0.2, "json": json, "DemoParams": DemoParams, "_": None, "In": []}
    with pytest.raises(ConfigError, match="unknown parameter 'alpah'; did you mean 'alpha'"):
        DemoParams.from_namespace(namespace)
    ok = DemoParams.from_namespace({"alpha": 0.1, "json": json, "Out": {}})
    assert ok.alpha == 0.1
    with pytest.raises(ConfigError, match="alpha='x'"):
        DemoParams.parse({"alpha": "x"})


def test_failed_run_records_error_and_reraises(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with start_run(DemoParams(project_dir=str(tmp_path), console_level=None)) as ctx:
            1 / 0  # noqa: B018
    rec = json.loads((ctx.run_dir / "run.json").read_text())
    assert rec["status"] == "failed" and "ZeroDivisionError" in rec["error"]
    assert "Traceback" in ctx.log_path.read_text()


def test_workflow_sessions_log_start_end_and_errors(tmp_path):
    ctx = start_run(DemoParams(project_dir=str(tmp_path), console_level=None))

    @log_workflow("decorated")
    def work(x):
        return x * 2

    @log_workflow()
    async def awork():
        raise ValueError("async failure")

    assert work(2) == 4
    with pytest.raises(ValueError):
        asyncio.run(awork())
    with pytest.raises(KeyError):
        with WorkflowSession("sync block"):
            raise KeyError("k")

    async def block():
        async with AsyncWorkflowSession("async block") as s:
            await asyncio.sleep(0)
        return s.elapsed_s

    assert asyncio.run(block()) >= 0
    ctx.finish()
    text = ctx.log_path.read_text()
    for needle in ("Workflow 'decorated' started", "Workflow 'decorated' finished",
                   "failed after", "ValueError: async failure", "Workflow 'sync block' failed",
                   "Workflow 'async block' finished"):
        assert needle in text, needle


def test_session_log_rotates_into_zip_files(tmp_path):
    ctx = start_run(DemoParams(project_dir=str(tmp_path), console_level=None, rotation_mb=0.01))
    for i in range(400):
        logger.info("filler line {} {}", i, "x" * 60)
    ctx.finish()
    zips = list(ctx.log_path.parent.glob("*.zip"))
    assert zips, "no rotated archive"
    with zipfile.ZipFile(zips[0]) as zf:
        assert "filler line" in zf.read(zf.namelist()[0]).decode()


def test_heartbeat_json_is_throttled_to_once_per_second(tmp_path):
    ctx = start_run(DemoParams(project_dir=str(tmp_path), console_level=None))
    writes = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.5:
        before = ctx.heartbeat._last_write
        ctx.item_done("x", events=1)
        writes += ctx.heartbeat._last_write != before
    ctx.finish()
    assert 1 <= writes <= 2


def _wrapped_interrupt() -> SystemError:
    """What CPython raises when SIGINT lands inside some C calls: a SystemError with the interrupt chained."""
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise SystemError("<method 'find' of 'bytes' objects> returned a result with an exception set")  # noqa: B904
    except SystemError as exc:
        return exc


def test_an_interrupt_surfacing_as_another_error_is_still_an_interrupt(tmp_path):
    from quantnb.runs import is_interrupt

    wrapped = _wrapped_interrupt()
    assert is_interrupt(wrapped) and is_interrupt(KeyboardInterrupt())
    assert not is_interrupt(ValueError("bad value")) and not is_interrupt(None)
    loop = ValueError("cycle")
    loop.__context__ = ValueError("back")
    loop.__context__.__context__ = loop
    assert not is_interrupt(loop)
    with pytest.raises(SystemError):
        with start_run(DemoParams(project_dir=str(tmp_path), console_level=None)) as ctx:
            raise wrapped
    assert json.loads((ctx.run_dir / "run.json").read_text())["status"] == "interrupted"


def test_etl_does_not_quarantine_a_file_when_the_user_interrupts(tmp_path):
    from quantnb.stages.etl import EtlParams, _collect

    ctx = start_run(EtlParams(project_dir=str(tmp_path), console_level=None))

    def interrupted_read():
        raise _wrapped_interrupt()

    with pytest.raises(KeyboardInterrupt):
        _collect(ctx, "data/raw/x.gz", tmp_path / "x.gz.parquet", 0, {}, interrupted_read)
    assert ctx.checkpoint.failed == {}

    def buggy_read():
        raise RuntimeError("a reader bug")

    _collect(ctx, "data/raw/y.gz", tmp_path / "y.gz.parquet", 1, {}, buggy_read)
    assert "RuntimeError: a reader bug" in ctx.checkpoint.failed["data/raw/y.gz"]  # a real error is quarantined
    ctx.finish()


def test_the_start_run_example_runs_as_written(project):
    from quantnb.runs._run import start_run as documented
    from tests._examples import run_examples

    run_examples(documented, start_run=documented, project=str(project))
    assert len(list((project / "runs").glob("count_*/run.json"))) == 1
