"""The import graph of ``lib/quantnb``: no circle, no import back up a layer, nobody imports the test kit.

Every module is parsed with :mod:`ast`; every import counts, at module level, inside a
function or under ``TYPE_CHECKING``, because an import inside a function that closes a circle
hides the circle, not the design problem. Only quantnb's own modules count (a lazy
``import torch`` is fine). ``from pkg import name`` counts as importing ``pkg`` and, when
``name`` is a module, ``pkg.name`` (as ``../shared/tools/import_circles.py`` counts). A quoted
module name (``"quantnb.features"``, ``"quantnb.stages.etl:EtlParams"``), as ``importlib`` and the
lazy re-exports of ``quantnb._lazy`` take it, counts too.

The layer order below is the one ``ARCHITECTURE.md`` states; a module may import its own
layer and the layers under it. A package that is in neither must be placed in both.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LIB = REPO / "lib" / "quantnb"

#: Bottom to top: the top-level packages and modules of quantnb in each layer (``quantnb`` is its __init__).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("quantnb", "_lazy", "_paths", "_pidlock", "_secrets", "_yaml", "retry", "config"),
    ("runs",),
    ("data", "evaluation"),
    ("features", "parallel"),
    ("record",),
    ("classifier",),
    ("agent",),
    ("live",),
    ("display",),
    ("stages",),
    ("runner", "lab"),
    ("testing",),
)

#: Circles let through for now, each exactly (a circle that grows or a new one fails).
ALLOWED_CIRCLES: tuple[frozenset[str], ...] = ()  # none: a new circle is moved to its owner, not allowed here

Graph = dict[str, list[tuple[str, int]]]
_QUOTED = re.compile(r"""["'](quantnb(?:\.\w+)+)(?::\w+)?["']""")


def _module_name(path: Path, root: Path) -> str:
    """``lib/quantnb/data/_io.py`` -> ``quantnb.data._io``; a package's ``__init__`` is the package."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _statements(body: list[ast.stmt]):
    """Yield every statement, nested ones too (functions, classes, if/try/with bodies); imports are statements."""
    for node in body:
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            inner = getattr(node, field, None)
            if isinstance(inner, list):
                yield from _statements(inner)


def import_graph(root: Path = LIB) -> tuple[Graph, dict[str, Path]]:
    """Return, per module of the package at ``root``, the package's modules it imports (with the line)."""
    files = {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: Graph = {m: [] for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        source = path.read_text(encoding="utf-8")
        for m in _QUOTED.finditer(source):  # importlib.import_module("quantnb.x"), attach(..., {"n": "quantnb.x"})
            if m.group(1) in files and m.group(1) != mod and m.group(1) not in {t for t, _ in graph[mod]}:
                graph[mod].append((m.group(1), source.count("\n", 0, m.start()) + 1))
        for node in _statements(ast.parse(source, str(path)).body):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    base = f"{parent}.{base}" if node.module else parent
                targets = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            for target in targets:
                while target and target not in files:  # a name in a module: the module
                    target = target.rpartition(".")[0]
                if target and target != mod and target not in {t for t, _ in graph[mod]}:
                    graph[mod].append((target, node.lineno))
    return graph, files


def circles(graph: Graph) -> list[frozenset[str]]:
    """Return the strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, edges = work[-1]
            for w, _ in edges:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(graph[w])))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.add(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(frozenset(comp))
    return found


def _top(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer_problems(graph: Graph, files: dict[str, Path], layers: tuple[tuple[str, ...], ...] = LAYERS) -> list[str]:
    """Return every import that runs up a layer, and every package that has no layer."""
    rank = {name: i for i, names in enumerate(layers) for name in names}
    problems = [f"{files[m]}: package {_top(m)!r} is in no layer; place it in LAYERS and in ARCHITECTURE.md"
                for m in graph if _top(m) not in rank]
    for mod, targets in graph.items():
        for target, line in targets:
            a, b = _top(mod), _top(target)
            if a in rank and b in rank and rank[b] > rank[a]:
                problems.append(f"{files[mod]}:{line}: {mod} imports {target}, a higher layer ({b} over {a}); "
                                f"move the shared piece down into {a} or lower, or pass it in from above")
    return problems


def kit_imports(graph: Graph, files: dict[str, Path]) -> list[str]:
    """Return every import of the test kit (``quantnb.testing``) from outside it."""
    return [f"{files[mod]}:{line}: {mod} imports the test kit {target}; move what it needs into the library "
            f"(tests inject the loopback pieces)"
            for mod, targets in graph.items() if _top(mod) != "testing"
            for target, line in targets if _top(target) == "testing"]


def private_imports(graph: Graph, files: dict[str, Path]) -> list[str]:
    """Return every import of another package's private module (``quantnb.data._binance`` from ``record/``)."""
    return [f"{files[mod]}:{line}: {mod} imports {target}, private to {_top(target)}/; import the name from "
            f"quantnb.{_top(target)} (export it there if another package needs it)"
            for mod, targets in graph.items()
            for target, line in targets
            if len(parts := target.split(".")) > 2 and parts[2].startswith("_") and _top(target) != _top(mod)]


@pytest.fixture(scope="module")
def lib_graph() -> tuple[Graph, dict[str, Path]]:
    return import_graph(LIB)


def test_no_import_circle_among_quantnb_modules(lib_graph):
    graph, _ = lib_graph
    new = [sorted(c) for c in circles(graph) if c not in ALLOWED_CIRCLES]
    assert not new, f"import circles (imports inside functions included): {new}"


def test_no_module_imports_a_higher_layer(lib_graph):
    problems = layer_problems(*lib_graph)
    assert not problems, "\n".join(problems)


def test_the_library_never_imports_the_test_kit(lib_graph):
    problems = kit_imports(*lib_graph)
    assert not problems, "\n".join(problems)


def test_a_package_is_used_through_its_exported_names_only(lib_graph):
    problems = private_imports(*lib_graph)
    assert not problems, "\n".join(problems)


def test_architecture_md_states_the_layers_the_test_checks():
    text = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
    block = re.search(r"```text\nlayers, top to bottom\n(.*?)```", text, re.S)
    assert block, "ARCHITECTURE.md: the ```text block 'layers, top to bottom' is missing"
    stated = [tuple(n.strip() for n in row.split("|")[1].split(",")) for row in block.group(1).splitlines()
              if "|" in row]
    assert tuple(reversed(stated)) == LAYERS, f"ARCHITECTURE.md states {stated[::-1]}, the test checks {LAYERS}"


def test_the_checks_find_a_circle_an_upward_import_and_a_test_kit_import(tmp_path):
    pkg = tmp_path / "quantnb"
    for rel, source in {
        "__init__.py": "",
        "errors.py": "",
        "runs/__init__.py": "from quantnb.runs._run import start_run\n",
        "runs/_run.py": "def start_run():\n    from quantnb.display import attach  # hidden in a function\n",
        "display/__init__.py": "from .monitor import RunMonitor\n",
        "display/monitor.py": "import quantnb.runs\n",
        "data/__init__.py": "import importlib\n\nimportlib.import_module('quantnb.display.monitor')\n",
        "live/_venue.py": "if True:\n    from quantnb.testing.server import patch\n",
        "testing/server.py": "from quantnb.errors import *\n",
        "live/_feed.py": "from quantnb.data._binance import decode\nfrom quantnb.data import read_bars\n",
        "data/_binance.py": "decode = None\n",
    }.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(source)
    graph, files = import_graph(pkg)
    assert circles(graph) == [frozenset({"quantnb.runs", "quantnb.runs._run", "quantnb.display",
                                         "quantnb.display.monitor"})]
    up = "\n".join(layer_problems(graph, files))
    assert "data/__init__.py:3: quantnb.data imports quantnb.display.monitor," in up, up  # by a quoted name
    assert up.count("\n") == 2 and "_run.py:2: quantnb.runs._run imports quantnb.display," in up, up
    assert "_venue.py:2: quantnb.live._venue imports quantnb.testing.server," in up, up  # testing is the top layer
    kit = kit_imports(graph, files)
    assert len(kit) == 1 and "quantnb.live._venue imports the test kit" in kit[0], kit
    private = private_imports(graph, files)
    assert len(private) == 1 and "_feed.py:1: quantnb.live._feed imports quantnb.data._binance," in private[0], private
