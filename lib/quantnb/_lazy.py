"""Lazy re-exports: a package's public names load their submodule on first use.

The runner validates a stage's parameters before it starts the kernel; importing a package
such as :mod:`quantnb.agent` must not import torch, stable-baselines3, ccxt or matplotlib for that
(PEP 562 module ``__getattr__``, as SciPy's ``lazy_loader`` does). A package lists each lazy name
once, as an import under ``if TYPE_CHECKING:`` (what type checkers and readers see), and once in
``__all__``; :func:`attach` reads the imports from the package's source.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["attach", "defer_rfc3987_syntax"]


def _type_checking_imports(package: str) -> dict[str, tuple[str, str]]:
    """Map each name imported under the package's ``if TYPE_CHECKING:`` to its module and name there."""
    path = Path(sys.modules[package].__file__ or "")
    names: dict[str, tuple[str, str]] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if not isinstance(node, ast.If):
            continue
        test = node.test
        if not (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"
                or isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
            continue
        for imp in node.body:
            if isinstance(imp, ast.ImportFrom):
                module = importlib.util.resolve_name("." * imp.level + (imp.module or ""), package)
                names.update({a.asname or a.name: (module, a.name) for a in imp.names})
    return names


def attach(package: str, names: Mapping[str, str] | None = None,
           ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return a module ``__getattr__`` and ``__dir__`` that import each public name on first use.

    ``names`` maps a public name to its submodule's absolute name; by default every
    ``from <module> import <name>`` under the package's top-level ``if TYPE_CHECKING:``. E.g. in
    ``quantnb/classifier/__init__.py``::

        if TYPE_CHECKING:  # the names for type checkers; at run time each loads on first use
            from quantnb.classifier._labels import label_bars

        __getattr__, __dir__ = attach(__name__)
        __all__ = ["label_bars"]
    """
    lazy = {k: (m, k) for k, m in names.items()} if names is not None else _type_checking_imports(package)

    def __getattr__(name: str) -> Any:
        try:
            module, attr = lazy[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), attr)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(lazy))

    return __getattr__, __dir__


def defer_rfc3987_syntax() -> None:
    """Let ``import jsonschema`` (papermill, nbformat) skip building rfc3987-syntax's IRI parser until it is used.

    jsonschema imports ``rfc3987_syntax`` for its ``iri`` formats, and that module compiles an
    Earley grammar (lark) at import time: 2-3 s of CPU on an idle machine, 10+ s on a busy one, in
    every ``quantnb run`` process. A stand-in module is registered instead; its
    ``is_valid_syntax`` imports the real module on its first call, so IRI checks behave exactly
    as before. Call it before jsonschema is imported; it does nothing if rfc3987-syntax is absent
    or already imported.
    """
    name = "rfc3987_syntax"
    if name in sys.modules or importlib.util.find_spec(name) is None:
        return
    stub = types.ModuleType(name, "Stand-in for rfc3987_syntax: the real module loads on first use.")
    real: list[Callable[[str, str], bool]] = []

    def is_valid_syntax(term: str, value: str) -> bool:
        if not real:
            if sys.modules.get(name) is stub:
                del sys.modules[name]
            real.append(importlib.import_module(name).is_valid_syntax)
        return real[0](term, value)

    stub.is_valid_syntax = is_valid_syntax  # type: ignore[attr-defined]
    sys.modules[name] = stub
