"""One type per fact: the progress event and the training outcome are each defined once in the library."""

from __future__ import annotations

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[2] / "lib" / "quantnb"


def test_progress_event_and_train_result_have_one_definition_each_in_lib():
    names = {"ProgressEvent": [], "TrainResult": []}
    for path in sorted(LIB.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:  # module-level classes
            if isinstance(node, ast.ClassDef) and node.name in names:
                names[node.name].append(str(path.relative_to(LIB)))
    assert names == {"ProgressEvent": ["runs/_progress.py"], "TrainResult": ["classifier/_stats.py"]}, names
