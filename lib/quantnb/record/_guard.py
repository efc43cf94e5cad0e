"""The recorder's guards: SQL identifiers, the output-folder lock, the bad-frame quarantine, non-finite prices.

- :func:`check_identifier`: a ClickHouse database/table name must match
  ``[A-Za-z_][A-Za-z0-9_.]*`` before it reaches a query (it is spliced into SQL text).
- :class:`FolderLock`: one recorder per output folder, an exclusive ``flock`` on
  ``.<folder name>.recorder.lock`` beside the folder (the folder holds only data), held for
  the recording's life (released by the kernel when the process dies, so a killed
  recorder never blocks its restart), as the trader's
  :class:`quantnb.live._state.SessionLock` does; the second recorder is refused with the
  first one's pid.
- :class:`Quarantine`: frames that cannot be decoded are appended, with their connection
  and the reason, to ``<folder>/<prefix>_bad_frames.ndjson``.
- :func:`has_nonfinite`: a fast byte test for ``NaN``/``inf`` prices in a frame.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from quantnb._pidlock import PidLock
from quantnb.errors import ConfigError

__all__ = ["check_identifier", "FolderLock", "Quarantine", "has_nonfinite", "IDENTIFIER_RE"]

IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
# a quoted price or size that is not a number: "NaN", "nan", "inf", "-Infinity" (JSON has no bare NaN)
_NONFINITE = re.compile(rb'"[-+]?(?:[Nn][Aa][Nn]|[Ii][Nn][Ff])')
_MAX_QUARANTINED_BYTES = 1 << 20


def check_identifier(value: str, field: str = "clickhouse_table") -> str:
    """Return ``value`` if it is a safe SQL identifier (``[A-Za-z_][A-Za-z0-9_.]*``).

    Parameters
    ----------
    value : str
        ClickHouse database or table name (``db.table`` allowed).
    field : str
        The parameter named in the error.

    Raises
    ------
    ConfigError
        If ``value`` is not a string matching :data:`IDENTIFIER_RE`.
    """
    if not isinstance(value, str) or not IDENTIFIER_RE.fullmatch(value):
        shown = repr(value)[:80]
        raise ConfigError(f"{field}={shown}: not a valid ClickHouse name; use letters, digits, '_' and '.' "
                          "only, starting with a letter or '_' (e.g. quantnb.book_events)")
    return value


def has_nonfinite(text: bytes) -> bool:
    """Return True when a frame holds a quoted ``NaN`` or ``inf`` value (a price or size that is not a number)."""
    # screen first (two memchr): every spelling of NaN and inf holds an n or N, which Bybit book and Binance
    # depth frames (keys, types, usual symbols) otherwise lack; the regex alone costs ~1 us a frame
    if text.find(b"n") < 0 and text.find(b"N") < 0:
        return False
    return _NONFINITE.search(text) is not None


class FolderLock(PidLock):
    """One recorder per folder: an exclusive ``flock`` on ``.<name>.recorder.lock`` beside the folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        super().__init__(self.folder.parent / f".{self.folder.name}.recorder.lock")

    def acquire(self) -> None:
        """Take the lock and record this process (pid, start time) in it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.try_acquire():
            h = self.holder()
            raise ConfigError(
                f"{self.folder}: another recorder writes this folder (pid {h.get('pid', '?')}, started "
                f"{h.get('started_at', '?')}); two recorders would write every frame twice into one raw file: stop "
                f"it (kill -TERM {h.get('pid', '<pid>')}) or give this one another output_dir")


class Quarantine:
    """Frames that could not be decoded, one JSON line each, in ``<folder>/<prefix>_bad_frames.ndjson``."""

    def __init__(self, folder: Path | None, prefix: str) -> None:
        self.path = Path(folder) / f"{prefix}_bad_frames.ndjson" if folder is not None else None
        self.n = 0

    def add(self, *, venue: str, connection: int, recv_ns: int, reason: str, text: bytes,
            symbol: str | None = None) -> None:
        """Append one bad frame (at most its first MiB) with where it came from and why it was refused."""
        self.n += 1
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"recv_ns": recv_ns, "venue": venue, "connection": connection, "symbol": symbol,
                           "reason": reason, "bytes": len(text),
                           "frame": text[:_MAX_QUARANTINED_BYTES].decode("utf-8", "replace")})
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
