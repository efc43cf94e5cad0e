"""``make lab``: JupyterLab on the project's kernel, on loopback only, with a random token.

Run as ``python -m quantnb.lab [--port N] [--root DIR]``. The server binds 127.0.0.1,
token authentication stays on (a fresh random token each start, never empty), kernels talk
over IPC sockets rather than TCP, and the URL with the token is printed first.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

from quantnb.errors import ConfigError

__all__ = ["lab_command", "main"]


def lab_command(port: int, token: str, root: str | Path, *, python: str | None = None) -> list[str]:
    """Return the command line that starts JupyterLab for the project.

    Parameters
    ----------
    port : int
        TCP port on 127.0.0.1; no retry on another port (the printed URL must be right).
    token : str
        Authentication token; must not be empty.
    root : str or pathlib.Path
        Project directory (JupyterLab's root and the kernels' working directory).
    python : str, optional
        Interpreter of the project's environment (this one by default).

    Returns
    -------
    list of str
        ``[python, "-m", "jupyterlab", ...]`` with port, token and root directory options.

    Raises
    ------
    ConfigError
        If ``token`` is empty (that would switch authentication off).
    """
    if not token:
        raise ConfigError("an empty token switches JupyterLab's authentication off; pass a random token")
    return [
        python or sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--KernelManager.transport=ipc",  # Unix sockets: no "TCP without encryption" warning, no open port
        "--MappingKernelManager.default_kernel_name=python3",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",  # no PyPI queries from the extension manager
        *_widget_extension_args(),
        *(["--ServerApp.allow_root=True"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),  # containers
    ]


def _widget_extension_args() -> list[str]:
    """Point JupyterLab at the widget extension when it lives in another environment.

    ipywidgets render only where JupyterLab finds their extension; a venv that borrows its
    packages from another (a git worktree's ``.venv``) has it in that one's share/jupyter.
    Only the extension path is added, not the whole data directory (its kernel specs would
    shadow the project's kernel).
    """
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

    Returns
    -------
    int
        JupyterLab's exit code.
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
    cmd = lab_command(args.port, token, root)
    os.execv(cmd[0], cmd)
    return 0  # pragma: no cover (execv does not return)


if __name__ == "__main__":
    sys.exit(main())
