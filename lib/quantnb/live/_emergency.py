"""Emergency protocol: cancel all, close all reduce-only, confirm flat, record, and (drawdown) halt."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, Protocol

from loguru import logger

from quantnb.agent import Fill
from quantnb.errors import ConfigError, QuantnbError
from quantnb.live._audit import EMERGENCIAS_COLUMNS, CsvAppender
from quantnb.live._broker import Broker
from quantnb.live._state import TradingState
from quantnb.retry import RetryPolicy
from quantnb.runs import atomic_write_text

__all__ = ["HALT_MARKER", "EmergencyCause", "EmergencyReport", "EmergencyProtocol", "OrderJournal",
           "check_not_halted", "halt_marker_path"]

HALT_MARKER = "HALTED_DRAWDOWN"
EmergencyCause = Literal["drawdown", "critical_error", "connection", "bad_data", "order_rejected", "stale_feed"]


class OrderJournal(Protocol):
    """Where the closing orders of a flatten are recorded (the trader: state file and registro)."""

    def order_intent(self, side: str, qty: float, purpose: str) -> str:
        """Record the intent of a reduce-only order before it is sent; return its client order id."""

    def order_filled(self, fill: Fill, purpose: str) -> None:
        """Record the fill of an order announced by :meth:`order_intent`."""

    def order_failed(self, client_order_id: str) -> None:
        """Forget an intent whose order failed (the venue is asked again on restart if unsure)."""


def halt_marker_path(out_dir: Path) -> Path:
    """Return ``<out_dir>/HALTED_DRAWDOWN``, the file that blocks restarts after a drawdown emergency."""
    return Path(out_dir) / HALT_MARKER


def check_not_halted(out_dir: Path) -> None:
    """Raise ConfigError, naming the file to remove, while a drawdown emergency's marker file exists."""
    marker = halt_marker_path(out_dir)
    if marker.exists():
        first = marker.read_text(encoding="utf-8", errors="replace").splitlines()[:1]
        raise ConfigError(f"trading for this model is halted after a drawdown emergency ({' '.join(first)}). "
                          f"Review the emergencias CSV and the account, then delete {marker} by hand to allow "
                          f"a restart")


@dataclasses.dataclass
class EmergencyReport:
    """What the emergency protocol did."""

    cause: str
    detail: str
    peak_equity_usd: float
    equity_usd: float
    orders_cancelled: int = 0  # -1 if the cancel failed
    positions_closed: dict[str, float] = dataclasses.field(default_factory=dict)  # symbol -> signed qty, base units
    confirmations: list[str] = dataclasses.field(default_factory=list)  # the venue's answers, failed steps
    flat_confirmed: bool = False  # the venue reported no position before the poll timeout
    marker_path: Path | None = None  # the halt marker written (drawdown only)


class EmergencyProtocol:
    """Flatten the account and stop."""

    def __init__(self, broker: Broker, out_dir: Path, session_ts: str, retry: RetryPolicy, *,
                 poll_interval_s: float = 0.5, poll_timeout_s: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep, journal: OrderJournal | None = None):
        self.broker = broker
        self.journal = journal
        self.state = TradingState.ACTIVE
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / f"emergencias_{session_ts}.csv"
        self.retry = retry
        self.poll_interval_s = poll_interval_s
        self.poll_timeout_s = poll_timeout_s
        self.sleep = sleep

    def run(self, cause: EmergencyCause, detail: str, *, peak_equity_usd: float, equity_usd: float) -> EmergencyReport:
        """Cancel all orders, close all positions reduce-only, poll until flat, record, halt on drawdown.

        Each exchange call is retried; a step that still fails is recorded and the protocol goes on
        to the next one: it never raises for an exchange failure.
        """
        logger.critical("live/emergency: cause={} {} — cancelling orders and closing positions", cause, detail)
        self.state = TradingState.HALTED
        rep = EmergencyReport(cause=cause, detail=detail, peak_equity_usd=peak_equity_usd, equity_usd=equity_usd)
        try:
            rep.orders_cancelled = self.retry.call(self.broker.cancel_all)
            rep.confirmations.append(f"cancel_all: {rep.orders_cancelled} open order(s) cancelled")
        except QuantnbError as err:
            rep.orders_cancelled = -1
            rep.confirmations.append(f"cancel_all FAILED: {err}")
        rep.flat_confirmed = self.flatten(rep, purpose="emergency_close")
        if rep.flat_confirmed:
            logger.critical("live/emergency: flat confirmed by the venue; closed {}", rep.positions_closed or "nothing")
        else:
            logger.critical("live/emergency: FLAT NOT CONFIRMED after {:.0f} s — check the account by hand: {}",
                            self.poll_timeout_s, rep.confirmations[-1] if rep.confirmations else "")
        if cause == "drawdown":
            rep.marker_path = halt_marker_path(self.out_dir)
            atomic_write_text(rep.marker_path, f"state={TradingState.HALTED.value} at {_now_iso()} cause=drawdown "
                                               f"{detail}\n"
                                               f"Delete this file by hand to allow the trader to restart.\n")
        self.record(rep)
        return rep

    def _positions(self, rep: EmergencyReport) -> dict[str, float] | None:
        try:
            return self.retry.call(self.broker.positions)
        except QuantnbError as err:
            rep.confirmations.append(f"positions FAILED: {err}")
            return None

    def flatten(self, rep: EmergencyReport, purpose: str = "emergency_close") -> bool:
        """Close every position reduce-only and poll until the venue reports none."""
        deadline = time.monotonic() + self.poll_timeout_s
        while True:
            open_pos = self._positions(rep)
            if open_pos is not None and not open_pos:
                return True
            for sym, qty in (open_pos or {}).items():
                cid = None
                try:
                    if self.journal is not None and sym == self.broker.symbol:
                        cid = self.journal.order_intent("sell" if qty > 0 else "buy", abs(qty), purpose)
                    fill = self.retry.call(self.broker.close_position, sym, qty, client_order_id=cid)
                    if self.journal is not None and cid is not None:
                        self.journal.order_filled(fill, purpose)
                    rep.positions_closed[sym] = rep.positions_closed.get(sym, 0.0) + qty
                    rep.confirmations.append(f"close {sym} {fill.side} {abs(fill.qty)} @ {fill.price_usd} "
                                             f"order {fill.order_id} {fill.status}")
                except QuantnbError as err:
                    rep.confirmations.append(f"close {sym} {qty} FAILED: {err}")
                    if self.journal is not None and cid is not None:
                        self.journal.order_failed(cid)
            self.sleep(self.poll_interval_s)
            if time.monotonic() >= deadline:
                final = self._positions(rep)
                return final is not None and not final

    def record_unconfirmed_stop(self, timeout_s: float, position_qty: float, peak_equity_usd: float,
                                equity_usd: float) -> None:
        """Record a stop whose flatten was not confirmed within ``timeout_s`` (the venue did not answer in time)."""
        rep = EmergencyReport("stop_request", f"stop requested; the flatten was not confirmed within "
                                              f"stop_timeout_s={timeout_s:g} s (venue unreachable or slow); last "
                                              f"known position {position_qty:g}", peak_equity_usd, equity_usd)
        rep.confirmations.append("flatten NOT CONFIRMED at the stop deadline; check the account by hand")
        logger.critical("live/stop: flatten not confirmed within {:g} s; recorded in {}", timeout_s, self.path)
        self.record(rep)

    def record(self, rep: EmergencyReport) -> None:
        """Append ``rep`` as one row of ``emergencias_<ts>.csv`` (created with its header)."""
        dd = 1.0 - rep.equity_usd / rep.peak_equity_usd if rep.peak_equity_usd > 0 else float("nan")
        with CsvAppender(self.path, EMERGENCIAS_COLUMNS) as out:
            out.write({
                "timestamp": _now_iso(), "cause": rep.cause, "detail": rep.detail,
                "peak_equity_usd": rep.peak_equity_usd, "equity_usd": rep.equity_usd, "drawdown_frac": dd,
                "orders_cancelled": rep.orders_cancelled,
                "positions_closed": ";".join(f"{s}:{q:g}" for s, q in rep.positions_closed.items()),
                "confirmations": " | ".join(rep.confirmations), "flat_confirmed": rep.flat_confirmed,
            })


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
