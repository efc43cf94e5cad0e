"""A throwaway PostgreSQL server from the installed binaries, on a loopback port, for tests and trials.

Debian's ``postgresql`` package puts ``initdb`` and ``pg_ctl`` in ``/usr/lib/postgresql/<v>/bin``
and creates the ``postgres`` system user. PostgreSQL refuses to run as root, so when this process
is root (CI containers) the server runs as ``postgres`` through ``runuser``, its data directory
owned by that user. Nothing is installed or left behind: the cluster lives in a temporary
directory removed by :meth:`PostgresServer.stop`.

    >>> from quantnb.testing.postgres import postgres_server
    >>> with postgres_server() as pg:                      # doctest: +SKIP
    ...     os.environ["QUANTNB_OPTUNA_STORAGE_PASSWORD"] = pg.password
    ...     run_optimization(OptimizationParams(storage=pg.url(), ...))
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["PostgresServer", "find_bin_dir", "start_postgres", "postgres_server"]

_INSTALL_HINT = ("install PostgreSQL's server binaries (Debian: apt-get install postgresql, as "
                 "scripts/system-deps.sh does) or set QUANTNB_PG_BIN to the folder holding initdb and pg_ctl")


@dataclasses.dataclass
class PostgresServer:
    """A running throwaway PostgreSQL cluster.

    Attributes
    ----------
    host, port : str, int
        Where it listens (127.0.0.1 only).
    user, password, dbname : str
        A superuser with a password (scram-sha-256 over TCP) and an empty database.
    base_dir : pathlib.Path
        Temporary folder holding ``data/`` and ``postgres.log``; removed by :meth:`stop`.
    """

    host: str
    port: int
    user: str
    password: str
    dbname: str
    base_dir: Path
    bin_dir: Path
    run_as: str | None

    def url(self, driver: str = "postgresql+psycopg") -> str:
        """Return the SQLAlchemy URL ``<driver>://<user>@<host>:<port>/<dbname>``, without the password.

        Parameters
        ----------
        driver : str, default "postgresql+psycopg"
            SQLAlchemy dialect and driver.
        """
        return f"{driver}://{self.user}@{self.host}:{self.port}/{self.dbname}"

    def env(self) -> dict[str, str]:
        """Return the environment variables that give a client the password."""
        return {"PGPASSWORD": self.password, "QUANTNB_OPTUNA_STORAGE_PASSWORD": self.password}

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.base_dir / "postgres.log"

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its folder."""
        if (self.base_dir / "data" / "postmaster.pid").exists():
            _run(self, "pg_ctl", "-D", str(self.base_dir / "data"), "-m", "fast", "-w", "-t", "60", "stop",
                 check=False)
        shutil.rmtree(self.base_dir, ignore_errors=True)


def find_bin_dir() -> Path:
    """Return the folder of ``initdb``/``pg_ctl``: ``$QUANTNB_PG_BIN``, ``pg_config --bindir``, Debian's.

    Raises
    ------
    FileNotFoundError
        If no PostgreSQL server binaries are installed, with what to install.
    """
    candidates = [os.environ.get("QUANTNB_PG_BIN", "")]
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    if shutil.which("initdb"):
        candidates.append(str(Path(shutil.which("initdb") or "").parent))
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    raise FileNotFoundError(f"no initdb/pg_ctl found (looked in {[c for c in candidates if c]}); {_INSTALL_HINT}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(server: PostgresServer, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(server.bin_dir / tool), *args]
    if server.run_as:
        cmd = ["runuser", "-u", server.run_as, "--", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=server.base_dir)
    if check and out.returncode != 0:
        log = server.log_path.read_text(errors="replace")[-2000:] if server.log_path.exists() else ""
        raise RuntimeError(f"{tool} {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()[-2000:]}\n{log}")
    return out


def start_postgres(
    base_dir: str | os.PathLike[str] | None = None,
    *,
    user: str = "quantnb",
    dbname: str = "optuna",
    port: int | None = None,
    durable: bool = False,
    timeout_s: float = 60,
) -> PostgresServer:
    """Create and start a cluster on 127.0.0.1; return it with a database ``dbname`` created.

    Parameters
    ----------
    base_dir : path, optional
        Empty or missing folder for the cluster; a new temporary folder by default. When this
        process is root it is handed to the ``postgres`` user, so it must not be under a
        folder that user cannot enter (pytest's ``tmp_path`` is such a folder: keep the default).
    user, dbname : str
        Superuser name (its password is random: :attr:`PostgresServer.password`) and database.
    port : int, optional
        TCP port; a free one by default.
    durable : bool
        Keep ``fsync`` on; off by default (a throwaway server: faster, and it is never killed).
    timeout_s : float
        How long ``pg_ctl`` waits for the server to accept connections.

    Raises
    ------
    FileNotFoundError
        If the server binaries are not installed.
    RuntimeError
        If ``initdb`` or the server fails (the server log's tail is in the message), or the
        process is root and there is no ``postgres`` user to run the server as.
    """
    bin_dir = find_bin_dir()
    run_as = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("PostgreSQL refuses to run as root and there is no 'postgres' user to run it as; "
                               f"{_INSTALL_HINT}") from None
        run_as = "postgres"
    base = Path(base_dir) if base_dir is not None else Path(tempfile.mkdtemp(prefix="quantnb-pg-"))
    base.mkdir(parents=True, exist_ok=True)
    if run_as:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    server = PostgresServer("127.0.0.1", port or _free_port(), user, secrets.token_urlsafe(18), dbname, base,
                            bin_dir, run_as)
    try:
        pwfile = base / "pwfile"
        pwfile.write_text(server.password + "\n")
        if run_as:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        pwfile.chmod(0o600)
        _run(server, "initdb", "-D", str(base / "data"), "-U", user, f"--pwfile={pwfile}", "--auth-local=trust",
             "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
        pwfile.unlink()
        opts = (f"-c listen_addresses=127.0.0.1 -c port={server.port} -c unix_socket_directories={base} "
                f"-c fsync={'on' if durable else 'off'} -c max_connections=50")
        _run(server, "pg_ctl", "-D", str(base / "data"), "-l", str(server.log_path), "-o", opts, "-w",
             "-t", str(int(timeout_s)), "start")
        _run(server, "psql", "-h", str(base), "-p", str(server.port), "-U", user, "-d", "postgres", "-v",
             "ON_ERROR_STOP=1", "-c", f'CREATE DATABASE "{dbname}"')
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def postgres_server(**kwargs: Any) -> Iterator[PostgresServer]:
    """Context manager around :func:`start_postgres`: the server is stopped and deleted on exit.

    Parameters
    ----------
    **kwargs : Any
        Passed to :func:`start_postgres`.
    """
    server = start_postgres(**kwargs)
    try:
        yield server
    finally:
        server.stop()
