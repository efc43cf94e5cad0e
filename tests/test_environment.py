from __future__ import annotations

import tomllib

import yaml

from tests.conftest import REPO


def _normalise(req: str) -> str:
    return req.replace(" ", "").lower().replace("_", "-")


def test_environment_yml_pins_exactly_the_pyproject_dependencies():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_normalise(d) for d in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_block = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {_normalise(d) for d in pip_block if not d.startswith("-e")}
    assert listed == wanted, f"only in environment.yml: {listed - wanted}; only in pyproject: {wanted - listed}"
    assert "python=3.11" in env["dependencies"]


def test_every_dependency_is_pinned_exactly():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    loose = [d for d in project["dependencies"] + project["optional-dependencies"]["dev"] if "==" not in d]
    assert not loose, f"unpinned: {loose}"
