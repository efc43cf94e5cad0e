"""Lazy re-exports: a package's public names load their submodule on first use.

The runner validates a stage's parameters before it starts the kernel; importing a package
such as :mod:`quantnb.rl` must not import torch, stable-baselines3, ccxt or matplotlib for that
(PEP 562 module ``__getattr__``, as SciPy's ``lazy_loader`` does).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["attach"]


def attach(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return a module ``__getattr__`` and ``__dir__`` that import each public name on first use.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    names : mapping of str to str
        Public name to the absolute name of the submodule that defines it.

    Returns
    -------
    (callable, callable)
        ``__getattr__(name)`` imports ``names[name]``, caches the value in the package and
        returns it; ``__dir__()`` lists the module's globals and every lazy name.

    Raises
    ------
    AttributeError
        From ``__getattr__``, for a name the package does not export.
    """

    def __getattr__(name: str) -> Any:
        try:
            module = names[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
