"""The runner validates parameters before it starts the kernel; that must not import torch & co."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from quantnb.stages import STAGES

HEAVY = ("torch", "stable_baselines3", "ccxt", "matplotlib.pyplot", "sklearn")

_PROBE = """
import json, sys
from quantnb.stages import params_class
params_class({stage!r}).model_json_schema()
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_validating_a_stage_imports_no_heavy_library(stage):
    out = subprocess.run([sys.executable, "-c", _PROBE.format(stage=stage, heavy=HEAVY)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == [], f"{stage}: the runner would import these"


def test_lazy_packages_still_export_every_name():
    import quantnb.live
    import quantnb.models
    import quantnb.research
    import quantnb.rl
    import quantnb.runlog

    for pkg in (quantnb.live, quantnb.models, quantnb.research, quantnb.runlog, quantnb.rl):
        missing = [n for n in pkg.__all__ if getattr(pkg, n, None) is None]
        assert not missing, f"{pkg.__name__}: {missing}"
        assert set(pkg.__all__) <= set(dir(pkg))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        quantnb.rl.nope  # noqa: B018
