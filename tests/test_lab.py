"""``python -m quantnb.lab``: the token reaches JupyterLab without showing in ``ps``."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from quantnb.errors import ConfigError
from quantnb.lab import _lab_command, _lab_environment
from tests.conftest import PYTHON

_START_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_an_empty_token_is_refused():
    with pytest.raises(ConfigError, match="empty token"):
        _lab_environment("")
    assert "JUPYTER_TOKEN" not in " ".join(_lab_command(8888, "/tmp"))


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_the_token_is_not_on_the_command_line_and_still_guards_the_server(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    port = _free_port()
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws")}
    proc = subprocess.Popen([PYTHON, "-m", "quantnb.lab", "--port", str(port), "--root", str(tmp_path)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        banner = "".join(proc.stdout.readline() for _ in range(2))  # type: ignore[union-attr]
        token = re.search(r"token=(\S+)", banner).group(1)  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + _START_TIMEOUT_S
        while _status_or_none(f"{base}/api/status?token={token}") != 200:
            assert proc.poll() is None and time.monotonic() < deadline, "JupyterLab did not start"
            time.sleep(0.5)
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode()  # what `ps` shows every local user
        assert "jupyterlab" in cmdline
        assert token not in cmdline, f"the token is on the command line: {cmdline!r}"
        assert _status(f"{base}/api/status") == 403, "the server answers without the token"
        assert _status(f"{base}/api/status?token=wrong{token}") == 403
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _status_or_none(url: str) -> int | None:
    try:
        return _status(url)
    except OSError:
        return None
