from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


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
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(dest.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, ``os.replace``).

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    data : bytes
        Full content.

    Returns
    -------
    pathlib.Path
        The destination path.

    Raises
    ------
    OSError
        If the write fails; the destination keeps its previous content.
    """
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; see :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically; see :func:`atomic_write_bytes`.

    Raises
    ------
    TypeError
        If ``obj`` is not JSON-serialisable (values are converted with ``str`` as a fallback
        only for paths and datetimes).
    OSError
        If the write fails.
    """
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
