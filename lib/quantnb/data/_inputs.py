"""Input paths of every stage: glob expansion (relative, absolute, ``**``), item identity, file checks.

Stages never hand user patterns to polars or pyarrow (which glob again and refuse ``**``
or brackets in a literal name): they expand them here into concrete paths and read
those paths as plain files.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import stat
from pathlib import Path

__all__ = ["expand_glob", "item_key", "shard_stem", "check_regular_file", "safe_token", "traversed_folder"]

_GLOB_CHARS = re.compile(r"[*?\[]")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_token(text: str, max_len: int = 48) -> str:
    """Return ``text`` reduced to ``[A-Za-z0-9_.-]`` (runs of other characters become ``-``).

    Parameters
    ----------
    text : str
        Any text, e.g. a folder or file name.
    max_len : int, default 48
        Longest result; edge ``-`` and ``.`` are stripped, and an empty result is ``"none"``.
    """
    return _UNSAFE.sub("-", text).strip("-.")[:max_len].strip("-.") or "none"


def expand_glob(root: Path, pattern: str) -> list[Path]:
    """Return every path ``pattern`` names, sorted, as absolute paths (not resolved).

    Parameters
    ----------
    root : pathlib.Path
        Project directory; a relative ``pattern`` is taken relative to it.
    pattern : str
        A path or glob pattern, relative or absolute (``~`` expanded); ``**`` matches any
        number of folders. A literal path is returned as is when it exists (even if it
        holds ``[`` or ``*`` in its name). Hidden files are matched only when named.

    Returns
    -------
    list of pathlib.Path
        Every match, whatever its kind (regular file, directory, broken symbolic link,
        FIFO...): the caller decides what a non-file means (see :func:`check_regular_file`).
    """
    text = os.path.expanduser(pattern)
    base = Path(text) if os.path.isabs(text) else root / text
    if os.path.lexists(base) or not _GLOB_CHARS.search(text):
        return [base] if os.path.lexists(base) else []
    text = _escape_literal_folders(root, text)
    if not os.path.isabs(text):
        text = os.path.join(glob.escape(str(root)), text)
    # "**" also yields the folder itself with a trailing separator: one entry per path
    return sorted({Path(m.rstrip(os.sep) or os.sep) for m in _glob(text)})


def _glob(text: str) -> list[str]:
    """``glob.glob(text, recursive=True)``, but ``**`` enters each real folder once (no symlink loops)."""
    parts = Path(text).parts
    if "**" not in parts:
        return glob.glob(text)
    i = parts.index("**")
    heads = glob.glob(os.path.join(*parts[:i])) if i else [os.curdir]
    rest = parts[i + 1:]
    found: list[str] = []
    for head in heads:
        for folder, files in _walk_once(head):
            if not rest:  # a trailing "**": each folder walked, and the files in it
                found += [folder + os.sep, *(os.path.join(folder, f) for f in files)]
            else:
                found += _glob(os.path.join(glob.escape(folder), *rest))
    return found


def _walk_once(top: str) -> list[tuple[str, list[str]]]:
    """Folders under ``top`` (itself first) with their visible non-folder entries, each real folder once."""
    out: list[tuple[str, list[str]]] = []
    seen = {(st.st_dev, st.st_ino) for a in Path(os.path.realpath(top)).parents for st in [os.stat(a)]}  # a link up
    for folder, dirs, files in os.walk(top, followlinks=True):
        try:
            st = os.stat(folder)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:  # reached again through a symbolic link: a loop or a second path
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # glob's "**" skips hidden folders
        out.append((folder, sorted(f for f in files if not f.startswith("."))))
    return out


def _escape_literal_folders(root: Path, text: str) -> str:
    """Escape the leading components that exist as named (a folder ``outside [1]``), so glob takes them literally."""
    parts = Path(text).parts
    prefix = Path(parts[0]) if os.path.isabs(text) else root
    out = [parts[0]] if os.path.isabs(text) else []
    for part in parts[1:] if os.path.isabs(text) else parts:
        if _GLOB_CHARS.search(part) and os.path.lexists(prefix / part):
            out.append(glob.escape(part))
        elif _GLOB_CHARS.search(part):
            return os.path.join(*out, part, *parts[len(out) + 1:]) if out else text
        else:
            out.append(part)
        prefix = prefix / part
    return os.path.join(*out) if out else text


def traversed_folder(pattern: str, path: Path) -> bool:
    """Return whether ``path`` is a folder that a recursive ``pattern`` walks through (``.../**`` or ``.../**/*``).

    Such a pattern matches the folder and, by the same pattern, every file under it, so
    the folder itself is no input and no error. A folder matched any other way (``data/*``,
    a folder named ``x.gz`` matched by ``**/*.gz``, a literal path) is an error for the caller.

    Parameters
    ----------
    pattern : str
        The glob as given by the user.
    path : Path
        One match of ``pattern``.
    """
    parts = Path(pattern).parts
    recursive = "**" in parts and parts[-1] in ("**", "*")
    return recursive and os.path.isdir(path) and not os.path.islink(path)


def item_key(path: Path, root: Path) -> str:
    """Return the identity of an input: its POSIX path relative to ``root``, else its absolute path.

    Two files of the same name in different folders (Bybit's ``linear/`` and ``spot/``
    archives of one symbol and day) get different keys.

    Parameters
    ----------
    path : Path
        The input file.
    root : Path
        The project root.
    """
    absolute = path if path.is_absolute() else root / path
    absolute = Path(os.path.normpath(absolute))
    root_n = Path(os.path.normpath(root))
    if absolute.is_relative_to(root_n):
        return absolute.relative_to(root_n).as_posix()
    return absolute.as_posix()


def shard_stem(key: str) -> str:
    """Return a file-name stem unique to an item key: the safe file name plus a hash of the whole key.

    E.g. ``data/raw/linear/BTCUSDT/2024-12-01_BTCUSDT_ob500.data.zip`` gives
    ``2024-12-01_BTCUSDT_ob500.data.zip-<16 hex digits>``; only ``[A-Za-z0-9_.-]`` characters.

    Parameters
    ----------
    key : str
        An item key (see :func:`item_key`).
    """
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return f"{safe_token(Path(key).name, 80)}-{digest}"


_KINDS = ((stat.S_ISDIR, "a directory", "narrow the pattern to files (e.g. end it with /*.gz) or name the files"),
          (stat.S_ISFIFO, "a FIFO (named pipe)", "write the data to a regular file and pass that file"),
          (stat.S_ISSOCK, "a socket", "write the data to a regular file and pass that file"),
          (stat.S_ISCHR, "a character device", "pass a regular file"),
          (stat.S_ISBLK, "a block device", "pass a regular file"))


def check_regular_file(path: Path) -> str | None:
    """Return why ``path`` is not a readable regular file (naming it and the fix), or None if it is.

    Parameters
    ----------
    path : pathlib.Path
        A path a glob or parameter named.

    Returns
    -------
    str or None
        E.g. ``"/x/y: a broken symbolic link (its target ... does not exist); fix or remove the link"``.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return (f"{path}: a broken symbolic link (its target {os.readlink(path)!r} does not exist); "
                    "fix or remove the link")
        return f"{path}: no such file; check the path or pattern"
    except OSError as exc:
        return f"{path}: cannot be examined ({type(exc).__name__}: {exc.strerror or exc}); fix its permissions"
    for test, what, fix in _KINDS:
        if test(st.st_mode):
            return f"{path}: {what}, not a regular file; {fix}"
    if not stat.S_ISREG(st.st_mode):
        return f"{path}: not a regular file (mode {oct(st.st_mode)}); pass a regular file"
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        return (f"{path}: not readable ({type(exc).__name__}: {exc.strerror or exc}); "
                "give the user running quantnb read permission (chmod +r) or copy the file")
    return None
