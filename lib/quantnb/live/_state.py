"""The trader's durable state: one trading-state enum, a JSON snapshot and (replay/paper) a step journal.

``runs/<train_id>/produccion/state_<mode>.json`` holds what a restarted session needs to
continue rather than start flat: the paper account, peak equity (the drawdown guard), the
last bar processed, the trading state, and every order sent but not yet confirmed (its
intent, with the client order id, is written before a venue order is sent). The file is
replaced atomically, so a kill at any instant leaves either the previous step's state or
this step's, never half of one: testnet/live write a temporary file, fsync it and
``os.replace`` it after every step; replay appends one compact JSON line per step to
``state_replay.journal`` (one ``os.write`` to a file opened ``O_APPEND``) and writes the
full snapshot (a new hidden data file, then ``os.replace`` of the ``state_replay.json``
symbolic link to it) only at the session's start, every ``snapshot_every_steps`` steps or
``snapshot_every_s`` seconds, and at its end, emptying the journal after it. The newest
readable record wins (``save_seq``); a torn last journal line is ignored. See :class:`StateStore`.

One session per ``train_id`` and mode: :class:`SessionLock` holds an exclusive ``flock``
on ``.session_<mode>.lock`` for the session's life (the kernel releases it when the
process dies, so a killed session never blocks its restart).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import math
import os
import time
from pathlib import Path
from typing import Any

import msgspec
from loguru import logger

from quantnb._pidlock import PidLock
from quantnb.errors import ConfigError
from quantnb.runs import atomic_write_text

__all__ = ["TradingState", "PendingOrder", "TraderState", "StateStore", "SessionLock", "STATE_VERSION",
           "state_path", "journal_path", "read_latest_state"]

STATE_VERSION = 1


class TradingState(enum.StrEnum):
    """What the trader may do (after NautilusTrader's ``TradingState``).

    ``ACTIVE``: open, grow and reduce positions. ``REDUCING``: only orders that shrink the
    position (an orderly stop, a flatten). ``HALTED``: nothing but the emergency close; after a
    drawdown the halt marker file keeps a restart refused until a person removes it.
    """

    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


@dataclasses.dataclass
class PendingOrder:
    """An order whose intent was recorded but whose outcome is not yet known."""

    client_order_id: str  # Binance newClientOrderId; the restart asks the venue about it
    side: str
    qty: float  # base units
    reduce_only: bool
    step: int  # registro step of the decision
    bar_ts_ms: int  # open time of the decision's candle, epoch ms
    purpose: str = "bar"  # bar (the agent's order), stop_flatten or emergency_close


@dataclasses.dataclass
class TraderState:
    """Everything a restarted session needs; see the module docstring for the file."""

    mode: str
    session_ts: str  # suffix of the session's registro_<ts>.csv (a resumed session appends to it)
    order_tag: str  # middle part of the session's client order ids (qnb-<tag>-<step>)
    trading_state: TradingState = TradingState.ACTIVE
    step: int = 0  # next registro step
    last_bar_ms: int | None = None  # open time of the last candle processed, epoch ms
    last_close: float | None = None  # its close (the paper account's mark), USDT
    equity0_usd: float = math.nan  # equity at the session's first start (the observation's reference)
    peak_equity_usd: float = math.nan
    max_drawdown_frac_seen: float = 0.0
    bad_bars_in_row: int = 0
    registro_bytes: int = 0  # registro size after the last step; a longer file is cut back on restart
    account: dict[str, float] = dataclasses.field(default_factory=dict)  # balance/equity_usd, position_qty, entry
    paper: dict[str, Any] | None = None  # the paper portfolio
    pending_orders: list[PendingOrder] = dataclasses.field(default_factory=list)  # sent, outcome unknown
    completed: bool = False  # a replay reached the end of its data (a new start is a new session)
    halt_cause: str = ""
    restarts: int = 0
    updated_at: str = ""  # UTC, ISO 8601
    save_seq: int = 0  # of the snapshot and the journal's last line, the higher wins

    def to_json_bytes(self) -> bytes:
        """Return the state as one compact JSON line (floats round-trip exactly; NaN written as null)."""
        out = {f: getattr(self, f) for f in _FIELDS}  # asdict's deep copy is slow; msgspec encodes the rest
        out["version"] = STATE_VERSION
        return _ENCODER.encode(out) + b"\n"

    def to_json(self) -> str:
        """Return the state as JSON text (see :meth:`to_json_bytes`)."""
        return self.to_json_bytes().decode("utf-8")

    @classmethod
    def from_json(cls, text: str, *, where: str = "<state>") -> TraderState:
        """Parse :meth:`to_json` output; ConfigError naming ``where`` if it is not a state of this version."""
        try:
            raw = msgspec.json.decode(text)
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            if raw.pop("version", None) != STATE_VERSION:
                raise ValueError(f"version is not {STATE_VERSION}")
            raw["trading_state"] = TradingState(raw["trading_state"])
            raw["pending_orders"] = [PendingOrder(**p) for p in raw.get("pending_orders", [])]
            for key in ("equity0_usd", "peak_equity_usd"):
                raw[key] = math.nan if raw.get(key) is None else float(raw[key])
            return cls(**raw)
        except (ValueError, TypeError, KeyError, msgspec.DecodeError) as err:
            raise ConfigError(f"{where}: not a readable trader state ({type(err).__name__}: {err}); move it away "
                              f"after checking the account, or pass fresh_start=True to start a new session") from None


def _enc_hook(obj: Any) -> Any:
    if hasattr(obj, "item"):  # a numpy scalar
        return obj.item()
    raise NotImplementedError(f"cannot encode {type(obj).__name__} in the trader state")


_FIELDS = tuple(f.name for f in dataclasses.fields(TraderState))
_ENCODER = msgspec.json.Encoder(enc_hook=_enc_hook)  # NaN and inf are written as null


def journal_path(out_dir: Path, mode: str) -> Path:
    """Return ``<out_dir>/state_<mode>.journal``, the per-step state lines written after the last snapshot."""
    return Path(out_dir) / f"state_{mode}.journal"


def _read_snapshot(path: Path) -> TraderState | None:
    for _ in range(50):  # a concurrent reader: the link may move between resolve and open
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            if not path.is_symlink():
                return None
            continue
        return TraderState.from_json(text, where=str(path))
    return None


def _last_journal_state(path: Path) -> TraderState | None:
    """Return the journal's last readable line as a state (a torn or unreadable line is skipped), or None."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    for line in reversed(data.split(b"\n")):
        if not line.strip():
            continue
        try:
            return TraderState.from_json(line.decode("utf-8"), where=str(path))
        except (ConfigError, UnicodeDecodeError):
            logger.warning("live/state: {}: an unreadable (torn) last line is ignored", path)
    return None


def read_latest_state(out_dir: Path, mode: str) -> TraderState | None:
    """Return the newest recorded state of ``mode`` (snapshot or journal line, by ``save_seq``), read only.

    Safe while a session writes (nothing is removed or locked).

    Parameters
    ----------
    out_dir : pathlib.Path
        The production folder, ``runs/<train_id>/produccion``.
    mode : str
        Trading mode (``"replay"``, ``"testnet"`` or ``"live"``).

    Raises
    ------
    ConfigError
        If the snapshot exists but is unreadable.
    """
    snap = _read_snapshot(state_path(out_dir, mode))
    line = _last_journal_state(journal_path(out_dir, mode))
    if line is not None and (snap is None or line.save_seq > snap.save_seq):
        return line
    return snap


def state_path(out_dir: Path, mode: str) -> Path:
    """Return ``<out_dir>/state_<mode>.json``, the trader state of one ``train_id`` and mode."""
    return Path(out_dir) / f"state_{mode}.json"


class StateStore:
    """Load and save one :class:`TraderState` atomically: a snapshot file, and for replay a step journal."""

    def __init__(self, out_dir: Path, mode: str, *, fsync: bool | None = None, snapshot_every_steps: int = 2_000,
                 snapshot_every_s: float = 10.0):
        self.mode = mode
        self.path = state_path(out_dir, mode)
        self.journal = journal_path(out_dir, mode)
        self.fsync = mode != "replay" if fsync is None else fsync
        self.snapshot_every_steps, self.snapshot_every_s = max(1, int(snapshot_every_steps)), float(snapshot_every_s)
        self._seq = 0
        self._journal_fd: int | None = None
        self._since_snapshot = 0
        self._snapshot_t = -math.inf
        if SessionLock(Path(out_dir), mode).free():  # never remove a running session's files
            self._remove_orphans()

    def _remove_orphans(self) -> None:
        """Remove data files of the link scheme (see :meth:`save`) that the state file does not point to."""
        current = os.readlink(self.path) if self.path.is_symlink() else None
        for f in self.path.parent.glob(f".{self.path.stem}.*.json"):
            if f.name != current:
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()

    def load(self) -> TraderState | None:
        """Return the recorded state (the newer of the snapshot and the journal's last line), or None."""
        state = read_latest_state(self.path.parent, self.mode)
        if state is not None and state.mode != self.mode:
            raise ConfigError(f"{self.path}: records mode {state.mode!r}, not {self.mode!r}; move it away")
        return state

    def save(self, state: TraderState, *, snapshot: bool = False) -> None:
        """Record ``state``: a journal line, or a full atomic snapshot (always with fsync, or when due/asked)."""
        state.save_seq += 1
        state.updated_at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        if self.fsync:
            atomic_write_text(self.path, state.to_json())
            return
        self._since_snapshot += 1
        if snapshot or self._journal_fd is None or self._since_snapshot >= self.snapshot_every_steps \
                or time.monotonic() - self._snapshot_t >= self.snapshot_every_s:
            self._write_snapshot(state)
            return
        line = state.to_json_bytes()
        done = os.write(self._journal_fd, line)  # one write: a kill leaves the line whole or torn
        while done < len(line):  # a short write (disk nearly full): finish the line before the next one
            done += os.write(self._journal_fd, line[done:])

    def _write_snapshot(self, state: TraderState) -> None:
        # Without fsync, renaming a new file over the old one still makes ext4 start writing it back
        # (auto_da_alloc); a fresh data file and an atomic swap of a symbolic link to it are cheaper and
        # just as atomic against a kill.
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        data = folder / f".{self.path.stem}.{os.getpid()}.{self._seq}.json"
        data.write_bytes(state.to_json_bytes())
        link = folder / f".{self.path.name}.link"
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        os.symlink(data.name, link)
        previous = os.readlink(self.path) if self.path.is_symlink() else None
        os.replace(link, self.path)
        if previous and previous != data.name:
            with contextlib.suppress(FileNotFoundError):
                (folder / previous).unlink()
        # The snapshot has a higher save_seq than every journal line: a kill before this truncation is harmless.
        if self._journal_fd is None:
            self._journal_fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
        os.ftruncate(self._journal_fd, 0)
        self._since_snapshot = 0
        self._snapshot_t = time.monotonic()

    def close(self) -> None:
        """Close the journal (the trader writes a final snapshot first)."""
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None

    def archive(self, reason: str) -> Path | None:
        """Rename the state file to ``state_<mode>.<UTC ts>.json`` (a deliberate fresh start); return the new path."""
        latest = self.load() if self.journal.exists() else None
        self.close()
        if not self.path.exists() and latest is None:
            return None
        ts = dt.datetime.now(dt.UTC).strftime("%Y%m%d_%H%M%S_%f")
        dest = self.path.with_name(f"{self.path.stem}.{ts}.json")
        if latest is not None:  # the journal may be newer than the snapshot: keep the newest state
            atomic_write_text(dest, latest.to_json())
            self.path.unlink(missing_ok=True)
            self.journal.unlink(missing_ok=True)
            self._remove_orphans()
        elif self.path.is_symlink():  # keep the content, not a link to a data file that will be removed
            atomic_write_text(dest, self.path.read_text(encoding="utf-8"))
            self.path.unlink()
            self._remove_orphans()
        else:
            self.path.replace(dest)
        logger.warning("live/state: {}: previous state moved to {}", reason, dest)
        return dest


class SessionLock(PidLock):
    """One session per ``train_id`` and mode: an exclusive ``flock`` on ``.session_<mode>.lock``."""

    def __init__(self, out_dir: Path, mode: str):
        super().__init__(Path(out_dir) / f".session_{mode}.lock", file_mode=0o666)
        self.mode = mode

    def acquire(self, run_id: str = "", session_ts: str = "") -> None:
        """Take the lock and record this process in it."""
        if not self.try_acquire(run_id=run_id, session_ts=session_ts):
            h = self.holder()
            raise ConfigError(
                f"{self.path}: another {self.mode} session of this train_id is running (pid {h.get('pid', '?')}, "
                f"run id {h.get('run_id') or '?'}, started {h.get('started_at', '?')}); two sessions must not trade "
                f"one account: stop it (SIGTERM {h.get('pid', '<pid>')}) or wait for it to end")
