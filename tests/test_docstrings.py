"""Every public function or class of ``lib/quantnb`` that takes arguments documents them.

Ruff's ``D1`` rules only ask for a docstring and ``D417`` only checks an existing
``Parameters`` section; this test asks for the section itself (numpy style) on the public API:
every name of a public module (no ``_`` in its path) and every name that a package's
``__init__`` or a public module lists in ``__all__``, wherever it is defined. The other names
of private ``_*.py`` modules are internal helpers: one line of docstring is enough (issue 17,
"less text, more meaning").
"""

from __future__ import annotations

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "lib" / "quantnb"


def _exported(root: Path = LIB) -> frozenset[str]:
    names: set[str] = set()
    for path in root.rglob("*.py"):
        if any(part.startswith("_") and part != "__init__.py" for part in path.relative_to(root).parts):
            continue  # a private module's __all__ is what it offers its package, not the public API
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets):
                names.update(e.value for e in getattr(node.value, "elts", ()) if isinstance(e, ast.Constant))
    return frozenset(names)


def _arg_names(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    a = fn.args
    names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    names += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
    return [n for n in names if n not in ("self", "cls")]


def _undocumented(path: Path, exported: frozenset[str], root: Path = LIB) -> list[str]:
    rel = path.relative_to(root).as_posix()
    private_module = any(part.startswith("_") and part != "__init__.py" for part in rel.split("/"))
    found: list[str] = []

    def public(name: str, top: bool) -> bool:
        return not name.startswith("_") and (not top or not private_module or name in exported)

    def visit(body: list[ast.stmt], prefix: str) -> None:
        top = not prefix
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and public(node.name, top):
                if _arg_names(node) and "Parameters\n" not in (ast.get_docstring(node) or ""):
                    found.append(f"{rel}:{node.lineno} {prefix}{node.name}")
            elif isinstance(node, ast.ClassDef) and public(node.name, top):
                init = next((b for b in node.body if isinstance(b, ast.FunctionDef) and b.name == "__init__"), None)
                if init is not None and _arg_names(init):
                    doc = (ast.get_docstring(node) or "") + (ast.get_docstring(init) or "")
                    if "Parameters\n" not in doc:
                        found.append(f"{rel}:{node.lineno} class {prefix}{node.name}")
                visit(node.body, f"{prefix}{node.name}.")

    visit(ast.parse(path.read_text(encoding="utf-8")).body, "")
    return found


def test_every_public_function_and_class_with_arguments_has_a_parameters_section():
    files = sorted(LIB.rglob("*.py"))
    assert len(files) > 50  # the walk found the package
    exported = _exported()
    assert {"start_run", "run_download", "RunPaths"} <= exported
    missing = [m for p in files for m in _undocumented(p, exported)]
    assert not missing, "public names without a numpy 'Parameters' section:\n" + "\n".join(missing)


def test_the_check_flags_a_public_function_or_class_without_parameters(tmp_path):
    src = tmp_path / "mod.py"
    src.write_text('def f(x):\n    """Do it."""\n\n\ndef _g(x):\n    pass\n\n\ndef h():\n    pass\n\n\n'
                   'class C:\n    def __init__(self, y):\n        pass\n')
    assert _undocumented(src, frozenset(), root=tmp_path) == ["mod.py:1 f", "mod.py:13 class C"]


def test_in_a_private_module_only_exported_names_need_parameters(tmp_path):
    (tmp_path / "pkg").mkdir()
    src = tmp_path / "pkg" / "_mod.py"
    src.write_text('def f(x):\n    """Do it."""\n\n\ndef helper(x):\n    """Help."""\n\n\n'
                   'class C:\n    def m(self, y):\n        """Do m."""\n')
    (tmp_path / "pkg" / "__init__.py").write_text('from pkg._mod import C, f\n\n__all__ = ["f", "C"]\n')
    (tmp_path / "pkg" / "_other.py").write_text('__all__ = ["helper"]\n')  # a private module's list: not public
    exported = _exported(tmp_path)
    assert exported == {"f", "C"}
    assert _undocumented(src, exported, root=tmp_path) == ["pkg/_mod.py:1 f", "pkg/_mod.py:10 C.m"]
