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
    import quantnb.agent
    import quantnb.classifier
    import quantnb.live
    import quantnb.runs

    for pkg in (quantnb.live, quantnb.classifier, quantnb.classifier, quantnb.runs, quantnb.agent):
        missing = [n for n in pkg.__all__ if getattr(pkg, n, None) is None]
        assert not missing, f"{pkg.__name__}: {missing}"
        assert set(pkg.__all__) <= set(dir(pkg))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        quantnb.agent.nope  # noqa: B018


_RUNNER_PROBE = """
import json, sys
import quantnb.runner._execute  # papermill, nbformat, jsonschema: what every `quantnb run` imports
import jsonschema
grammar_built = "lark" in sys.modules
checker = jsonschema.FormatChecker()
print(json.dumps([grammar_built, checker.conforms("https://example.org/a", "iri"), checker.conforms("::x", "iri"),
                  "lark" in sys.modules]))
"""


def test_the_runner_builds_no_iri_grammar_at_start_and_iri_formats_are_still_checked():
    out = subprocess.run([sys.executable, "-c", _RUNNER_PROBE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    built_at_import, valid_ok, invalid_ok, built_on_use = json.loads(out.stdout.splitlines()[-1])
    assert not built_at_import, "rfc3987-syntax's Earley grammar is compiled at every `quantnb run` start"
    assert valid_ok and not invalid_ok and built_on_use  # the real checker, loaded on first use
