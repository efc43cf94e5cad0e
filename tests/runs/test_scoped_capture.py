"""Log capture ends with the run: nothing printed or logged afterwards reaches its files."""

from __future__ import annotations

import logging
import sys
import warnings

import pytest
from loguru import logger

from quantnb.config import StageParams
from quantnb.runs import start_run


class ScopeParams(StageParams):
    stage = "scope"


@pytest.mark.parametrize("outcome", ["returns", "raises"])
def test_nothing_after_the_run_reaches_its_log(tmp_path, outcome):
    stdout, stderr, hook = sys.stdout, sys.stderr, sys.excepthook
    prod = tmp_path / "prod.log"
    try:
        with start_run(ScopeParams(project_dir=str(tmp_path), console_level=None)) as ctx:
            ctx.add_cumulative_log(prod, include_streams=True)
            print("inside the run")
            if outcome == "raises":
                raise ValueError("stage failed")
    except ValueError:
        pass
    assert sys.stdout is stdout and sys.stderr is stderr and sys.excepthook is hook
    print("a later cell prints")
    sys.stderr.write("a later cell writes stderr\n")
    logger.error("a later cell logs an error")
    logging.getLogger("ipykernel").error("the kernel's own error")
    warnings.warn("a later warning", stacklevel=1)
    for path in (ctx.log_path, prod):
        text = path.read_text()
        assert "inside the run" in text, path
        for later in ("a later cell", "the kernel's own error", "a later warning"):
            assert later not in text, (path, later)
    assert ("Run " + ctx.run_id + " ended") in ctx.log_path.read_text()


def test_the_next_run_captures_again(tmp_path):
    with start_run(ScopeParams(project_dir=str(tmp_path), console_level=None)) as first:
        pass
    print("between runs")
    with start_run(ScopeParams(project_dir=str(tmp_path), console_level=None, retention_days=2)) as second:
        print("inside the second run")
    assert "between runs" not in first.log_path.read_text() + second.log_path.read_text()
    assert "inside the second run" in second.log_path.read_text()
