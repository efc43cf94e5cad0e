"""Atomic writers (temp file, fsync, rename) that honour the umask and mask secrets."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from quantnb._secrets import SecretMasker
from quantnb.runs._layout import RunPaths
from quantnb.runs._process import pid_alive

_TMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.tmp$")


def current_umask() -> int:
    """Return the process umask without changing it (read from /proc; ``os.umask`` elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # not thread-safe, hence the /proc path first
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success, fsync it and rename it into place.

    Write the file at the yielded path (with any library: ``pl.DataFrame.write_parquet``,
    ``torch.save``, ...). When the block exits normally the temporary file is fsynced and
    ``os.replace``d onto ``path`` (atomic on POSIX), so a reader or a killed process never
    sees half a file. When the block raises, the temporary file is removed and the error
    propagates; ``path`` is untouched.

    Parameters
    ----------
    path : str or os.PathLike
        Final destination. Its parent directory is created if missing.

    Yields
    ------
    pathlib.Path
        Temporary file in the same directory (same filesystem, so the rename is atomic).

    Raises
    ------
    OSError
        If the write, fsync or rename fails; the destination keeps its previous content.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), 0o666 & ~current_umask())  # mkstemp made it 0600
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(dest.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, ``os.replace``)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically with secrets masked (``***``); return ``path``.

    Parameters
    ----------
    path : str or path-like
        Destination file; its folder is created if missing.
    text : str
        Content; values of secret environment variables are replaced, so no file quantnb writes carries one.
    """
    return atomic_write_bytes(path, mask_secrets(text).encode("utf-8"))


def mask_secrets(text: str) -> str:
    """Return ``text`` with the values of secret environment variables replaced by ``***``."""
    return SecretMasker()(text)


def _mask_obj(obj: Any, mask: Any) -> Any:
    if isinstance(obj, str):
        return mask(obj)
    if isinstance(obj, dict):
        return {(mask(k) if isinstance(k, str) else k): _mask_obj(v, mask) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_mask_obj(v, mask) for v in obj]
    return obj


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically, secrets masked; return ``path``.

    Parameters
    ----------
    path : str or path-like
        Destination file; its folder is created if missing.
    obj : Any
        JSON-serialisable object (paths and datetimes are written as strings).

    Raises
    ------
    TypeError
        If ``obj`` is not JSON-serialisable (only paths and datetimes fall back to ``str``).
    OSError
        If the write fails.
    """
    masker = SecretMasker()
    if masker:  # mask the values (not the JSON text) so escaped characters cannot hide a secret
        obj = _mask_obj(json.loads(json.dumps(obj, default=_json_default)), masker)
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default)
    return atomic_write_text(path, text + "\n")


def _json_default(value: Any) -> Any:
    import datetime as _dt

    if isinstance(value, (Path, _dt.datetime, _dt.date)):
        return str(value) if isinstance(value, Path) else value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def read_json_tolerant(path: str | os.PathLike[str]) -> Any | None:
    """Read a JSON file, returning ``None`` when it is missing or unparsable.

    Parameters
    ----------
    path : str or os.PathLike
        File to read.

    Returns
    -------
    object or None
        The decoded JSON, or ``None`` if the file does not exist or is not valid JSON
        (a state file is only ever replaced atomically, so this means "no state").
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def json_unreadable_reason(path: str | os.PathLike[str]) -> str | None:
    """Return why an existing JSON file cannot be read (None if it is missing or reads fine)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    try:
        json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text (byte {exc.start})"
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}; {len(data)} bytes)"
    return None


def remove_stale_temp_files(*folders: str | os.PathLike[str] | RunPaths, recursive: bool = True) -> list[Path]:
    """Delete temporary files of atomic writes whose writer process is dead.

    A process killed inside :func:`atomic_path` leaves ``.<name>.<pid>.<random>.tmp``
    behind; a resumed run calls this on its folders. Files of a live writer are kept, and so
    is any ``.tmp`` file without a writer's pid in its name: quantnb did not write it.

    Parameters
    ----------
    *folders : str or os.PathLike
        Folders to clean (missing ones are skipped); a :class:`~quantnb.runs.RunPaths`
        is accepted and means the run's own folders.
    recursive : bool
        Also clean sub-folders.

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    dirs: list[Path] = []
    for folder in folders:
        if isinstance(folder, RunPaths):
            dirs += [folder.run_dir, folder.heartbeat_json.parent, folder.checkpoint.parent, folder.debug_plots]
        else:
            dirs.append(Path(folder))
    removed = []
    for d in dirs:
        if not d.is_dir():
            continue
        for f in d.rglob(".*.tmp") if recursive else d.glob(".*.tmp"):
            m = _TMP_NAME.match(f.name)
            if m is None or pid_alive(int(m.group("pid"))):
                continue
            try:
                f.unlink()
                removed.append(f)
            except OSError:
                continue
    return removed
