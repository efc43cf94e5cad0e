from __future__ import annotations

import ast

import nbformat
import papermill
import pytest

from quantnb.stages import STAGES, params_class
from tests.conftest import REPO

TOOLS = {"monitor"}  # notebooks that are not a stage
NOTEBOOKS = sorted(p for p in (REPO / "notebooks").glob("*.ipynb") if p.stem not in TOOLS)


def test_every_stage_has_a_notebook():
    assert {p.stem for p in NOTEBOOKS} == set(STAGES)


def test_monitor_notebook_is_thin_and_displays_the_run_monitor():
    nb = nbformat.read(REPO / "notebooks" / "monitor.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    for cell in code:
        tree = ast.parse(cell.source)
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)]
    assert "RunMonitor(" in code[-1].source and code[-1].source.rstrip().endswith("monitor")


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
    assigned = {t.id for n in ast.parse(tagged[0].source).body if isinstance(n, ast.Assign)
                for t in n.targets if isinstance(t, ast.Name)}
    # papermill skips a line with two '=' (a '>=' in its comment too), so -p cannot set that name
    assert assigned <= set(inferred), f"{path.name}: papermill cannot parse {sorted(assigned - set(inferred))}"
    model = params_class(path.stem)
    unknown = set(inferred) - set(model.model_fields) - set(getattr(model, "flat_names", frozenset)())
    assert not unknown, f"{path.name}: parameters the model does not know: {unknown}"
    required = {n for n, f in model.model_fields.items() if f.is_required()}
    assert required <= set(inferred)
    body = "\n".join(c.source for c in code[1:])
    assert f"{model.__name__}.from_namespace(globals())" in body
    assert body.count(f"run_{path.stem}(") == 1


@pytest.fixture
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    sh = InteractiveShell.instance()
    yield sh
    sh.set_custom_exc((), None)
    InteractiveShell.clear_instance()


def _run(sh, source: str):
    return sh.run_cell(source, store_history=True)


def test_run_all_twice_in_one_kernel_with_a_changed_parameter_takes_only_the_parameters_cell(shell):
    call = "from quantnb.stages.etl import EtlParams\nparams = EtlParams.from_namespace(globals())"
    for n_workers in (2, 3):
        assert _run(shell, f"input_globs = ['x/*.csv']\nn_workers = {n_workers}\nresume = False").success
        res = _run(shell, call)
        assert res.success, res.error_in_exec
        assert shell.user_ns["params"].n_workers == n_workers
        assert _run(shell, "result = {'rows': 1}\nexploring = [1, 2]\nresult").success  # later cells' globals


def test_misspelt_name_in_the_parameters_cell_or_injected_by_papermill_is_refused(shell, capsys):
    call = "from quantnb.stages.etl import EtlParams\nparams = EtlParams.from_namespace(globals())"
    _run(shell, "n_workers = 2\nresume = False")
    _run(shell, "# Parameters\nn_worker = 3\n")  # papermill's injected cell: only unknown names
    res = _run(shell, call)
    from quantnb.errors import ConfigError

    assert isinstance(res.error_in_exec, ConfigError)
    out = capsys.readouterr().out
    assert "unknown parameter 'n_worker'; did you mean 'n_workers'" in out
    assert "Traceback" not in out and "config.py" not in out, "one message, not the library's traceback"
    _run(shell, "n_workers = 2\nskip_untill_snapshot = True")
    assert isinstance(_run(shell, call).error_in_exec, ConfigError)


def test_console_lines_reach_each_cell_after_the_run_reconfigured_stdout(tmp_path):
    """ipykernel re-targets sys.stdout at every cell (set_parent); our capture must pass that on."""
    import nbclient

    nb = nbformat.v4.new_notebook()
    start = (f"from pathlib import Path\nfrom loguru import logger\nfrom quantnb.runs._capture import "
             f"configure_sinks\nconfigure_sinks(Path({str(tmp_path / 'a.log')!r}))\nlogger.warning('first')")
    nb.cells = [nbformat.v4.new_code_cell(s) for s in (
        start, "print('print between')", start.replace("first", "second"))]
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    texts = ["".join(o.get("text", "") for o in c.outputs) for c in nb.cells]
    assert "first" in texts[0] and "print between" in texts[1] and "second" in texts[2], texts


@pytest.mark.parametrize("config", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_pipeline_parameters_are_in_the_notebooks_parameters_cells(config):
    """Papermill only warns ('Passed unknown parameter') for a name the parameters cell lacks."""
    import yaml

    for step in yaml.safe_load(config.read_text())["stages"]:
        cell = set(papermill.inspect_notebook(str(REPO / "notebooks" / f"{step['stage']}.ipynb")))
        missing = set(step.get("params") or {}) - cell
        assert not missing, f"{config.name}: {step['stage']} notebook's parameters cell lacks {sorted(missing)}"
