"""Parameter YAML: an alias bomb is refused at once; errors quote a short prefix of a value."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from quantnb.config import load_yaml_params
from quantnb.errors import ConfigError
from tests.conftest import QUANTNB

_MEMORY_CAP_BYTES = 3 * 1024**3  # the bomb reached 5 GB RSS on main; the refusal needs a few MB


def _bomb(levels: int = 9, fanout: int = 9) -> str:
    """The 'billion laughs': nine nested anchors in under 1 KB expanding to 9**9 strings."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * fanout)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fanout)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\ninput_globs: *l{levels - 1}\n"


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_CAP_BYTES, _MEMORY_CAP_BYTES))


def _run(root: Path, *args: str):
    import subprocess

    t0 = time.monotonic()
    res = subprocess.run([QUANTNB, *args], cwd=root, capture_output=True, text=True, timeout=120,
                         preexec_fn=_capped)
    return res, time.monotonic() - t0


def test_an_alias_bomb_params_file_is_refused_quickly(project):
    bomb = project / "bomb.yaml"
    bomb.write_text(_bomb())
    assert bomb.stat().st_size < 1024
    res, wall_s = _run(project, "run", "etl", "-f", "bomb.yaml")
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert "bomb.yaml" in res.stderr and "aliases" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr) < 1000 and wall_s < 60
    assert not (project / "runs").exists()


def test_an_alias_bomb_in_a_pipeline_or_a_p_value_is_refused(project):
    (project / "pipe.yaml").write_text(_bomb().replace("input_globs:", "stages:"))
    res, _ = _run(project, "pipeline", "-f", "pipe.yaml")
    assert res.returncode == 2 and "pipe.yaml" in res.stderr and "aliases" in res.stderr, res.stderr[-2000:]
    flow = "{" + ", ".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}" if i else "lol"] * 9) + "]"
                           for i in range(9)) + ", v: *l8}"
    res, _ = _run(project, "run", "etl", "-p", "input_globs", flow)
    assert res.returncode == 2 and "-p value" in res.stderr and "aliases" in res.stderr, res.stderr[-2000:]


def test_a_recursive_alias_is_refused_and_ordinary_aliases_still_work(tmp_path):
    loop = tmp_path / "loop.yaml"
    loop.write_text("input_globs: &g [a.csv, *g]\n")
    with pytest.raises(ConfigError, match="loop.yaml.*aliases"):
        load_yaml_params(loop)
    ok = tmp_path / "ok.yaml"
    ok.write_text("input_globs: &g [a.csv, b.csv]\nother: *g\n")
    assert load_yaml_params(ok) == {"input_globs": ["a.csv", "b.csv"], "other": ["a.csv", "b.csv"]}


def test_an_error_quotes_only_a_short_prefix_of_a_huge_value():
    from quantnb.stages.etl import EtlParams

    for value in ("9" * 1_000_000 + "x", [["x"] * 1000] * 1000):
        with pytest.raises(ConfigError) as err:
            EtlParams.parse({"n_workers": value})
        assert "n_workers=" in str(err.value) and len(str(err.value)) < 1000, len(str(err.value))
