"""Atomic writers: the umask's mode, secrets masked in every JSON/text file, no temporary file left."""

from __future__ import annotations

import json
import os
import stat

import pytest

from quantnb.runs import atomic_write_json, atomic_write_text, update_run_record
from quantnb.runs._checkpoint import Checkpoint

SECRET = "tok-4f9a2b"


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    os.umask(old)
    yield set_mask
    os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_get_the_mode_of_a_plain_open(tmp_path, umask, mask, mode):
    umask(mask)
    path = atomic_write_json(tmp_path / "state.json", {"a": 1})
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left


def test_secrets_are_masked_in_json_checkpoint_and_run_record(tmp_path, monkeypatch):
    monkeypatch.setenv("FOO_SECRET", SECRET)
    monkeypatch.setenv("SHORT_TOKEN", "abc")  # under 4 characters: not a secret
    atomic_write_json(tmp_path / "q.json", {"reason": f"line 3: {SECRET!r} is not a number",
                                            SECRET: [f"x{SECRET}y"], "n": 3, "abc": "abc"})
    data = json.loads((tmp_path / "q.json").read_text())
    assert data == {"reason": "line 3: '***' is not a number", "***": ["x***y"], "n": 3, "abc": "abc"}
    atomic_write_text(tmp_path / "t.txt", f"key={SECRET}\n")
    assert (tmp_path / "t.txt").read_text() == "key=***\n"
    ckpt = Checkpoint(tmp_path / "ckpt.json", "run", "hash", resume=False)
    ckpt.mark_failed("input.csv", f"input.csv line 7: price {SECRET!r}")
    update_run_record(tmp_path, failed_items=ckpt.failed, error=f"bad {SECRET}")
    for path in tmp_path.iterdir():
        assert SECRET not in path.read_text(), path


def test_stale_temp_cleanup_removes_a_dead_writers_file_and_leaves_tmp_files_it_did_not_write(tmp_path):
    from quantnb.runs import remove_stale_temp_files

    dead_pid = 2**22 + 12345  # above the default pid_max (4194304): no such process
    ours = tmp_path / f".model.pt.{dead_pid}.x1y2.tmp"
    foreign = tmp_path / ".notes.abc.tmp"  # another program's temp file: no writer pid in the name
    for f in (ours, foreign):
        f.write_bytes(b"half")
        os.utime(f, (0, 0))  # written long ago
    assert remove_stale_temp_files(tmp_path) == [ours]
    assert foreign.exists() and not ours.exists()
