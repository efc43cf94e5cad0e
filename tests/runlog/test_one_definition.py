"""One type per fact: the progress event and the training outcome are each defined once in the library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[2] / "lib" / "quantnb"


@pytest.mark.parametrize("name", ["ProgressEvent", "TrainResult"])
def test_the_type_has_one_definition_in_lib(name):
    where = [str(p.relative_to(LIB)) for p in sorted(LIB.rglob("*.py"))
             for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
             if isinstance(node, ast.ClassDef) and node.name == name]
    assert len(where) == 1, f"{name} is defined in {where}"
