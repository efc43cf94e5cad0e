"""ETL inputs: ``**`` through symbolic-link loops, and the crossed-book advice naming a real parameter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from quantnb.stages.etl import EtlParams, run_etl
from quantnb.testing.builders import write_bybit_file

_EXPAND = "import sys; from pathlib import Path; from quantnb.data._inputs import expand_glob; " \
          "print('\\n'.join(map(str, expand_glob(Path(sys.argv[1]), sys.argv[2]))))"


def _etl(project: Path, globs: list[str], **kw) -> object:
    return run_etl(EtlParams(project_dir=str(project), input_globs=globs, n_workers=1, output_dir="data/out",
                             console_level=None, **kw))


def test_a_recursive_glob_does_not_follow_symbolic_link_loops(tmp_path):
    raw = tmp_path / "data" / "raw"
    (raw / "a" / "b").mkdir(parents=True)
    for name in ("x.csv", "a/y.csv", "a/b/z.csv"):
        (raw / name).write_text("t\n")
    os.symlink("..", raw / "a" / "b" / "up")  # a loop to the parent
    os.symlink("../../..", raw / "a" / "b" / "top")  # and one above the pattern's folder
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "w.csv").write_text("t\n")
    os.symlink(outside, raw / "linked")  # a link to a folder that is not a loop is still followed
    for pattern, want in [("data/raw/**/*.csv", ["a/b/z.csv", "a/y.csv", "linked/w.csv", "x.csv"]),
                          ("data/**/b/**/*.csv", ["a/b/z.csv"])]:
        res = subprocess.run([sys.executable, "-c", _EXPAND, str(tmp_path), pattern], capture_output=True,
                             text=True, timeout=60)  # Python's glob walks these loops 40 levels deep, twice over
        assert res.returncode == 0, res.stderr[-2000:]
        got = [str(Path(p).relative_to(raw)) for p in res.stdout.split()]
        assert got == want, (pattern, got[:10], len(got))


def test_a_crossed_book_is_quarantined_with_advice_that_works(project):
    built = write_bybit_file(project / "data" / "raw", defect="crossed", seed=7)
    first = _etl(project, ["data/raw/*.data"])
    (reason,) = first.quarantined.values()
    assert f"line {built.defect_line}" in reason and "the book is crossed" in reason
    assert "-p on_crossed skip" in reason, reason
    again = _etl(project, ["data/raw/*.data"], on_crossed="skip")  # the parameter the advice names
    assert again.status == "completed" and not again.quarantined
    (quality,) = again.quality.values()
    assert quality["crossed"] >= 1


def test_a_spot_file_among_linear_ones_is_a_conflict_reported_per_file(project):
    import json

    linear = project / "data" / "raw" / "orderbook" / "linear" / "BTCUSDT"
    kept = write_bybit_file(linear, depth=50, seed=11)  # the linear capture
    stray = write_bybit_file(linear, depth=200, seed=12)  # same symbol and day, e.g. spot, in the linear folder
    res = _etl(project, ["data/raw/**/*.data"])
    assert res.status == "completed" and not res.quarantined
    rel = {p: str(p.relative_to(project)) for p in (kept.path, stray.path)}
    (conflict,) = res.conflicts
    assert conflict["instrument"] == "bybit/linear/BTCUSDT" and conflict["minutes"] >= 2
    assert {conflict["file"], conflict["used"]} == set(rel.values())
    rec = json.loads((project / "runs" / res.run_id / "run.json").read_text())
    assert rec["results"]["conflicts"] == res.conflicts
    log = (project / "logs" / "etl" / f"{res.run_id}.log").read_text()
    line = next(ln for ln in log.splitlines() if "merge: " in ln)
    assert "WARNING" in line and conflict["file"] in line and conflict["used"] in line
