from __future__ import annotations

import ast

import nbformat
import papermill
import pytest

from quantnb.stages import STAGES, params_class
from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_every_stage_has_a_notebook():
    assert {p.stem for p in NOTEBOOKS} == set(STAGES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_thin_and_its_parameters_match_the_stage_model(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and code[0] is tagged[0], "the first code cell, and only it, is tagged parameters"
    for cell in code:
        tree = ast.parse(cell.source)
        defs = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]
        assert not defs, f"{path.name}: definitions belong in the library: {[d.name for d in defs]}"
        assert "os.chdir" not in cell.source and "pip install" not in cell.source
    inferred = papermill.inspect_notebook(str(path))  # what papermill itself can parse
    model = params_class(path.stem)
    unknown = set(inferred) - set(model.model_fields) - set(getattr(model, "flat_names", frozenset)())
    assert not unknown, f"{path.name}: parameters the model does not know: {unknown}"
    required = {n for n, f in model.model_fields.items() if f.is_required()}
    assert required <= set(inferred)
    body = "\n".join(c.source for c in code[1:])
    assert f"{model.__name__}.from_namespace(globals())" in body
    assert body.count(f"run_{path.stem}(") == 1
