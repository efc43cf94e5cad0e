"""``make lab``: JupyterLab on the project's kernel, on loopback only, with a random token.

Run as ``python -m quantnb.lab [--port N] [--root DIR]``. The server binds 127.0.0.1,
token authentication stays on (a fresh random token each start, never empty), kernels talk
over IPC sockets rather than TCP, and the URL with the token is printed first. The token
reaches JupyterLab through the ``JUPYTER_TOKEN`` environment variable, never its command
line (``ps`` and ``/proc/<pid>/cmdline`` are readable by every local user; the environment
only by the same user).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path

from quantnb.errors import ConfigError

__all__ = ["main"]


def _lab_command(port: int, root: str | Path, *, python: str | None = None) -> list[str]:
    """Return the command line that starts JupyterLab on 127.0.0.1:``port`` (no token: see :func:`_lab_environment`)."""
    return [
        python or sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root}",
        "--KernelManager.transport=ipc",  # Unix sockets: no "TCP without encryption" warning, no open port
        "--MappingKernelManager.default_kernel_name=python3",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",  # no PyPI queries from the extension manager
        *_widget_extension_args(),
        *(["--ServerApp.allow_root=True"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),  # containers
    ]


def _lab_environment(token: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return ``environ`` with ``JUPYTER_TOKEN`` set (ConfigError if empty: no authentication) and no token file."""
    if not token:
        raise ConfigError("an empty token switches JupyterLab's authentication off; pass a random token")
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if k != "JUPYTER_TOKEN_FILE"}
    env["JUPYTER_TOKEN"] = token
    return env


def _widget_extension_args() -> list[str]:
    """Point JupyterLab at the widget extension when it lives in another environment (a worktree's venv)."""
    # only the extension path: the other environment's whole data directory would shadow the project's kernel
    try:
        import jupyterlab_widgets
    except ImportError:
        return []
    ext = Path(jupyterlab_widgets.__file__).resolve().parents[4] / "share" / "jupyter" / "labextensions"
    if not ext.is_dir() or ext == Path(sys.prefix).resolve() / "share" / "jupyter" / "labextensions":
        return []
    return [f"--LabApp.extra_labextensions_path={ext}"]


def main(argv: list[str] | None = None) -> int:
    """Start JupyterLab in the foreground; return its exit code.

    Parameters
    ----------
    argv : list of str or None
        Command-line arguments (``--port``, ``--root``); None reads ``sys.argv``.
    """
    parser = argparse.ArgumentParser(prog="python -m quantnb.lab", description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("QUANTNB_LAB_PORT", "8888")))
    parser.add_argument("--root", default=None, help="project directory (default: found from the cwd)")
    args = parser.parse_args(argv)
    from quantnb._paths import project_root

    root = project_root(args.root)
    token = secrets.token_urlsafe(24)
    print(f"JupyterLab for {root}\n  open: http://127.0.0.1:{args.port}/lab/tree/notebooks?token={token}\n"
          "  (loopback only; the token changes at every start; Ctrl-C stops the server)", flush=True)
    cmd = _lab_command(args.port, root)
    os.execve(cmd[0], cmd, _lab_environment(token))
    return 0  # pragma: no cover (execv does not return)


if __name__ == "__main__":
    sys.exit(main())
