"""The trader's durable state: one trading-state enum and one JSON file written atomically after every step.

``runs/<train_id>/produccion/state_<mode>.json`` holds what a restarted session needs to
continue rather than start flat: the paper account, peak equity (the drawdown guard), the
last bar processed, the trading state, and every order sent but not yet confirmed (its
intent, with the client order id, is written before a venue order is sent). The file is
replaced atomically, so a kill at any instant leaves either the previous step's state or
this step's, never half of one: testnet/live write a temporary file, fsync it and
``os.replace`` it; replay writes a new hidden data file and ``os.replace``s the
``state_replay.json`` symbolic link to it (see :class:`StateStore`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import json
import math
import os
from pathlib import Path
from typing import Any

from loguru import logger

from quantnb.errors import ConfigError
from quantnb.runlog import atomic_write_text

__all__ = ["TradingState", "PendingOrder", "TraderState", "StateStore", "STATE_VERSION", "state_path"]

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
    """An order whose intent was recorded but whose outcome is not yet known.

    Attributes
    ----------
    client_order_id : str
        Our id for the order (Binance ``newClientOrderId``); the restart asks the venue about it.
    side : {"buy", "sell"}
        Order side.
    qty : float
        Quantity, base units.
    reduce_only : bool
        Whether the order may only shrink the position.
    step : int
        Registro step of the decision.
    bar_ts_ms : int
        Open time of the candle the decision was made on, epoch ms.
    purpose : str
        ``bar`` (the agent's order), ``stop_flatten`` or ``emergency_close``.
    """

    client_order_id: str
    side: str
    qty: float
    reduce_only: bool
    step: int
    bar_ts_ms: int
    purpose: str = "bar"


@dataclasses.dataclass
class TraderState:
    """Everything a restarted session needs; see the module docstring for the file.

    Attributes
    ----------
    mode : str
        ``replay``, ``testnet`` or ``live``.
    session_ts : str
        Suffix of the session's ``registro_<ts>.csv`` (a resumed session appends to it).
    order_tag : str
        Middle part of the session's client order ids (``qnb-<tag>-<step>``).
    trading_state : TradingState
        The state when the file was written.
    step : int
        Next registro step index.
    last_bar_ms : int or None
        Open time of the last candle processed, epoch ms.
    last_close : float or None
        Its close (the paper account's mark), USDT.
    equity0_usd : float
        Equity at the session's first start (the observation's reference), USDT.
    peak_equity_usd, max_drawdown_frac_seen : float
        The drawdown guard: peak equity, USDT, and the largest drawdown seen.
    bad_bars_in_row : int
        Consecutive rejected candles before the last processed one.
    registro_bytes : int
        Size of the registro after the last recorded step; a longer file (a step killed
        before its state was written) is cut back to it on restart.
    account : dict
        Last known ``balance_usd``, ``equity_usd``, ``position_qty``, ``entry_price``.
    paper : dict or None
        The paper portfolio (cash, position, entry price, fees, realized PnL, trades).
    pending_orders : list of PendingOrder
        Orders sent, outcome unknown.
    completed : bool
        True once a replay reached the end of its data (a new start is a new session).
    halt_cause : str
        Why the state is ``halted`` (emergency cause), else ``""``.
    restarts : int
        How many times the session was resumed.
    updated_at : str
        UTC time of the write, ISO 8601.
    """

    mode: str
    session_ts: str
    order_tag: str
    trading_state: TradingState = TradingState.ACTIVE
    step: int = 0
    last_bar_ms: int | None = None
    last_close: float | None = None
    equity0_usd: float = math.nan
    peak_equity_usd: float = math.nan
    max_drawdown_frac_seen: float = 0.0
    bad_bars_in_row: int = 0
    registro_bytes: int = 0
    account: dict[str, float] = dataclasses.field(default_factory=dict)
    paper: dict[str, float] | None = None
    pending_orders: list[PendingOrder] = dataclasses.field(default_factory=list)
    completed: bool = False
    halt_cause: str = ""
    restarts: int = 0
    updated_at: str = ""

    def to_json(self) -> str:
        """Return the state as JSON (floats round-trip exactly; NaN written as null)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # asdict's deep copy is slow
        out["pending_orders"] = [dataclasses.asdict(p) for p in self.pending_orders]
        out["version"] = STATE_VERSION
        out["trading_state"] = self.trading_state.value
        return json.dumps(_nan_to_none(out), sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, *, where: str = "<state>") -> TraderState:
        """Parse :meth:`to_json` output.

        Raises
        ------
        ConfigError
            If the text is not a state file of this version (the message names ``where``).
        """
        try:
            raw = json.loads(text)
            if raw.pop("version", None) != STATE_VERSION:
                raise ValueError(f"version is not {STATE_VERSION}")
            raw["trading_state"] = TradingState(raw["trading_state"])
            raw["pending_orders"] = [PendingOrder(**p) for p in raw.get("pending_orders", [])]
            for key in ("equity0_usd", "peak_equity_usd"):
                raw[key] = math.nan if raw.get(key) is None else float(raw[key])
            return cls(**raw)
        except (ValueError, TypeError, KeyError) as err:
            raise ConfigError(f"{where}: not a readable trader state ({type(err).__name__}: {err}); move it away "
                              f"after checking the account, or pass fresh_start=True to start a new session") from None


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    return obj


def state_path(out_dir: Path, mode: str) -> Path:
    """Return ``<out_dir>/state_<mode>.json``, the trader state of one ``train_id`` and mode."""
    return Path(out_dir) / f"state_{mode}.json"


class StateStore:
    """Load and save one :class:`TraderState` file atomically.

    Parameters
    ----------
    out_dir : pathlib.Path
        ``runs/<train_id>/produccion``.
    mode : str
        ``replay``, ``testnet`` or ``live``: each mode has its own file.
    fsync : bool, optional
        Flush each write to the disk (file and folder) before it replaces the previous one,
        so it survives a power loss too. Default: True for ``testnet``/``live`` (one write a
        minute), False for ``replay`` (a paper simulation writing thousands of states a
        second would spend ~10 ms per bar in fsync); without it the write is still atomic
        against a killed process (temporary file, then ``os.replace``).
    """

    def __init__(self, out_dir: Path, mode: str, *, fsync: bool | None = None):
        self.mode = mode
        self.path = state_path(out_dir, mode)
        self.fsync = mode != "replay" if fsync is None else fsync
        self._seq = 0
        self._remove_orphans()

    def _remove_orphans(self) -> None:
        """Remove data files of the link scheme (see :meth:`save`) that the state file does not point to."""
        current = os.readlink(self.path) if self.path.is_symlink() else None
        for f in self.path.parent.glob(f".{self.path.stem}.*.json"):
            if f.name != current:
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()

    def load(self) -> TraderState | None:
        """Return the recorded state, or None when there is none.

        Raises
        ------
        ConfigError
            If the file exists but cannot be read as a state of this mode.
        """
        if not self.path.exists():
            return None
        state = TraderState.from_json(self.path.read_text(encoding="utf-8"), where=str(self.path))
        if state.mode != self.mode:
            raise ConfigError(f"{self.path}: records mode {state.mode!r}, not {self.mode!r}; move it away")
        return state

    def save(self, state: TraderState) -> None:
        """Write ``state`` atomically (temporary file, fsync when :attr:`fsync`, ``os.replace``)."""
        state.updated_at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        if self.fsync:
            atomic_write_text(self.path, state.to_json())
            return
        # Without fsync, renaming a new file over the old one still makes ext4 start writing it back
        # (auto_da_alloc), ~0.5-2.5 ms a bar; a fresh data file and an atomic swap of a symbolic link
        # to it cost ~0.07 ms and are just as atomic against a kill.
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        data = folder / f".{self.path.stem}.{os.getpid()}.{self._seq}.json"
        data.write_text(state.to_json(), encoding="utf-8")
        link = folder / f".{self.path.name}.link"
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        os.symlink(data.name, link)
        previous = os.readlink(self.path) if self.path.is_symlink() else None
        os.replace(link, self.path)
        if previous and previous != data.name:
            with contextlib.suppress(FileNotFoundError):
                (folder / previous).unlink()

    def archive(self, reason: str) -> Path | None:
        """Rename the state file to ``state_<mode>.<UTC ts>.json`` (a deliberate fresh start); return the new path."""
        if not self.path.exists():
            return None
        ts = dt.datetime.now(dt.UTC).strftime("%Y%m%d_%H%M%S_%f")
        dest = self.path.with_name(f"{self.path.stem}.{ts}.json")
        if self.path.is_symlink():  # keep the content, not a link to a data file that will be removed
            atomic_write_text(dest, self.path.read_text(encoding="utf-8"))
            self.path.unlink()
            self._remove_orphans()
        else:
            self.path.replace(dest)
        logger.warning("live/state: {}: previous state moved to {}", reason, dest)
        return dest
