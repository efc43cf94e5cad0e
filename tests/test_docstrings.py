"""Every public function or class of ``lib/quantnb`` that takes arguments documents them.

Ruff's ``D1`` rules only ask for a docstring and ``D417`` only checks an existing
``Parameters`` section; this test asks for the section itself (numpy style), in private
``_*.py`` modules too. A path being rewritten may be listed in ``EXCLUDED`` for a while;
``pyproject.toml`` should then exclude the same one from ``D1``.
"""

from __future__ import annotations

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "lib" / "quantnb"

EXCLUDED: tuple[str, ...] = ()  # paths (relative to lib/quantnb) not yet checked; none left


def _arg_names(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    a = fn.args
    names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    names += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
    return [n for n in names if n not in ("self", "cls")]


def _undocumented(path: Path, root: Path = LIB) -> list[str]:
    rel = path.relative_to(root).as_posix()
    found: list[str] = []

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                if _arg_names(node) and "Parameters\n" not in (ast.get_docstring(node) or ""):
                    found.append(f"{rel}:{node.lineno} {prefix}{node.name}")
            elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                init = next((b for b in node.body if isinstance(b, ast.FunctionDef) and b.name == "__init__"), None)
                if init is not None and _arg_names(init):
                    doc = (ast.get_docstring(node) or "") + (ast.get_docstring(init) or "")
                    if "Parameters\n" not in doc:
                        found.append(f"{rel}:{node.lineno} class {prefix}{node.name}")
                visit(node.body, f"{prefix}{node.name}.")

    visit(ast.parse(path.read_text(encoding="utf-8")).body, "")
    return found


def test_every_public_function_and_class_with_arguments_has_a_parameters_section():
    files = [p for p in sorted(LIB.rglob("*.py")) if not p.relative_to(LIB).as_posix().startswith(EXCLUDED)]
    assert len(files) > 50  # the walk found the package
    missing = [m for p in files for m in _undocumented(p)]
    assert not missing, "public names without a numpy 'Parameters' section:\n" + "\n".join(missing)


def test_the_check_flags_a_public_function_or_class_without_parameters(tmp_path):
    src = tmp_path / "_mod.py"
    src.write_text('def f(x):\n    """Do it."""\n\n\ndef _g(x):\n    pass\n\n\ndef h():\n    pass\n\n\n'
                   'class C:\n    def __init__(self, y):\n        pass\n')
    assert _undocumented(src, root=tmp_path) == ["_mod.py:1 f", "_mod.py:13 class C"]
