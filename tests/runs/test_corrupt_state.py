"""A corrupt run.json is listed as unreadable; a corrupt checkpoint is a WARNING naming it."""

from __future__ import annotations

import json

import pytest

from quantnb.config import StageParams
from quantnb.runs import list_runs, start_run
from tests.conftest import run_cli


class DemoParams(StageParams):
    stage = "demo"


def _finished_run(root, items=("a", "b")) -> str:
    with pytest.raises(KeyboardInterrupt):
        with start_run(DemoParams(project_dir=str(root), console_level=None)) as ctx:
            ctx.set_total(3)
            for item in items:
                ctx.checkpoint.mark_completed(item)
                ctx.item_done(item)
            raise KeyboardInterrupt("simulated SIGINT")
    return ctx.run_id


@pytest.mark.parametrize("garbage", [b'{"run_id": "demo_x", "status": "compl', b"\xff\xfe\x00", b"[1, 2]"],
                         ids=["torn", "binary", "not-an-object"])
def test_quantnb_runs_lists_a_corrupt_run_json_as_unreadable(tmp_path, garbage):
    root = tmp_path / "proj"
    good = _finished_run(root)
    bad_dir = root / "runs" / "demo_20240101_000000_badbad"
    bad_dir.mkdir(parents=True)
    (bad_dir / "run.json").write_bytes(garbage)
    summaries = {s.run_id: s for s in list_runs(root)}
    assert set(summaries) == {good, bad_dir.name}
    bad = summaries[bad_dir.name]
    assert bad.status == "unreadable" and f"runs/{bad_dir.name}/run.json" in bad.error
    res = run_cli("runs", "--root", str(root), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith(bad_dir.name))
    assert " unreadable " in line and "run.json" in line
    only = run_cli("runs", "--root", str(root), "--status", "unreadable", cwd=tmp_path)
    assert bad_dir.name in only.stdout and good not in only.stdout
    assert (bad_dir / "run.json").read_bytes() == garbage  # listing does not touch it


def test_a_corrupt_checkpoint_is_a_warning_naming_it_and_is_kept(tmp_path):
    root = tmp_path / "proj"
    run_id = _finished_run(root)
    ckpt = root / "logs" / "checkpoints" / f"{run_id}_completed.json"
    ckpt.write_bytes(ckpt.read_bytes()[:25])  # torn by a disk fault
    torn = ckpt.read_bytes()
    with start_run(DemoParams(project_dir=str(root), console_level=None, resume=True)) as ctx:
        assert ctx.run_id == run_id and ctx.resumed
        assert not ctx.checkpoint.is_completed("a")  # nothing can be trusted: redo
    log = ctx.log_path.read_text()
    warning = next(ln for ln in log.splitlines() if "unreadable" in ln)
    assert "WARNING" in warning and ckpt.name in warning and "not JSON" in warning
    assert ckpt.with_name(ckpt.name + ".corrupt").read_bytes() == torn
    assert json.loads(ckpt.read_text())["status"] == "completed"


@pytest.mark.parametrize("garbage", [b'{"run_id": "demo_x", "status": "compl', b"\xff\xfe\x00", b"[1, 2]"],
                         ids=["torn", "binary", "not-an-object"])
def test_updating_a_corrupt_run_json_keeps_the_old_bytes_beside_the_new_record(tmp_path, garbage):
    """update_run_record never throws away what it cannot read: the bytes move to run.json.unreadable-<UTC>."""
    from loguru import logger

    from quantnb.runs import update_run_record

    (tmp_path / "run.json").write_bytes(garbage)
    said: list[str] = []
    sink = logger.add(lambda m: said.append(str(m)), level="WARNING")
    try:
        rec = update_run_record(tmp_path, status="interrupted")
    finally:
        logger.remove(sink)
    kept = list(tmp_path.glob("run.json.unreadable-*"))
    assert rec == {"status": "interrupted"} and json.loads((tmp_path / "run.json").read_text()) == rec
    assert len(kept) == 1 and kept[0].read_bytes() == garbage
    assert len(said) == 1 and "run.json was unreadable" in said[0] and kept[0].name in said[0], said
    update_run_record(tmp_path, status="completed")  # a readable record is merged, nothing more is moved aside
    assert len(list(tmp_path.glob("run.json.unreadable-*"))) == 1
