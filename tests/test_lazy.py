"""``quantnb._lazy.attach`` reads a package's lazy names from its one ``TYPE_CHECKING`` import list."""

from __future__ import annotations

import sys

import pytest


def test_attach_without_a_mapping_loads_each_type_checking_import_on_first_use(tmp_path, monkeypatch):
    pkg = tmp_path / "lazypkg"
    pkg.mkdir()
    (pkg / "_heavy.py").write_text("LOADS = ['heavy']\n\ndef f():\n    return 42\n\nclass K:\n    pass\n")
    (pkg / "_other.py").write_text("VALUE = 'v'\n")
    (pkg / "__init__.py").write_text(
        "from typing import TYPE_CHECKING\n\nfrom quantnb._lazy import attach\n\n"
        "if TYPE_CHECKING:\n    from lazypkg._heavy import K, f\n    from ._other import VALUE as renamed\n\n"
        "__getattr__, __dir__ = attach(__name__)\n__all__ = ['K', 'f', 'renamed']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("lazypkg")]:
        monkeypatch.delitem(sys.modules, name)
    import lazypkg

    assert "lazypkg._heavy" not in sys.modules  # nothing loaded by the package import
    assert {"K", "f", "renamed"} <= set(dir(lazypkg))
    assert lazypkg.f() == 42
    assert sys.modules["lazypkg._heavy"].LOADS == ["heavy"]
    assert lazypkg.K.__name__ == "K"
    assert "lazypkg._other" not in sys.modules
    assert lazypkg.renamed == "v"  # ``from ._other import VALUE as renamed``: relative, renamed
    with pytest.raises(AttributeError, match="module 'lazypkg' has no attribute 'nope'"):
        lazypkg.nope  # noqa: B018
    for name in [m for m in sys.modules if m.startswith("lazypkg")]:
        monkeypatch.delitem(sys.modules, name)
