"""Importing any stage module alone gives its runs the progress widget and the one-line interrupt."""

from __future__ import annotations

import subprocess
import sys

from quantnb.stages import STAGES

_PROBE = """
import importlib, sys
importlib.import_module(sys.argv[1])
from quantnb.runs._interrupt import INTERRUPT_HOOKS, START_HOOKS
print(sorted(h.__name__ for h in START_HOOKS), sorted(h.__name__ for h in INTERRUPT_HOOKS))
"""


def test_every_stage_module_registers_the_display_hooks_on_its_own():
    """A notebook imports one stage module (e.g. download): its runs still show progress (a lab test caught it)."""
    for stage, target in STAGES.items():
        module = target.split(":")[0]
        out = subprocess.run([sys.executable, "-c", _PROBE, module], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip() == "['attach_progress'] ['show_interrupt_as_one_line']", (stage, out.stdout)
