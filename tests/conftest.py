from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from quantnb._lazy import defer_rfc3987_syntax

defer_rfc3987_syntax()  # the tests import nbformat (jsonschema): no IRI grammar built unless a test checks an IRI

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data" / "samples"
PYTHON = sys.executable
QUANTNB = str(Path(sys.executable).with_name("quantnb"))


def make_project(root: Path) -> Path:
    """A throwaway project directory: the repo's notebooks and configs, the samples linked in."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'quantnb-test-project'\n")
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    if (REPO / "configs").exists():
        shutil.copytree(REPO / "configs", root / "configs")
    (root / "data").mkdir()
    os.symlink(SAMPLES, root / "data" / "samples")
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "proj")


@pytest.fixture(scope="session")
def _cli_agent_bundle(tmp_path_factory) -> tuple[Path, str]:
    """ETL of the BTC-PERP month and a tiny SAC agent through the CLI, once per test session."""
    from tests.stages.test_trading_stages import _agent_bundle

    return _agent_bundle(tmp_path_factory.mktemp("cli-agent"))


@pytest.fixture
def agent_project(_cli_agent_bundle, tmp_path: Path) -> tuple[Path, str]:
    """A copy of the session's CLI-trained agent project for one test: (root, train_id)."""
    root, train_id = _cli_agent_bundle
    copy = tmp_path / "proj"
    shutil.copytree(root, copy, symlinks=True)  # data/samples stays a link
    return copy, train_id


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run([QUANTNB, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture(autouse=True)
def _restore_run_sinks():
    """Give back stdout/stderr and loguru's sinks that a test's run left captured."""
    yield
    from quantnb.runs import _capture

    if _capture._state is not None:
        _capture._state.restore()
        _capture._state = None
