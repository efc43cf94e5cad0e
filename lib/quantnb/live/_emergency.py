"""Emergency protocol: cancel all, close all reduce-only, confirm flat, record, and (drawdown) halt."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, Protocol

from loguru import logger

from quantnb.agent._costs import Fill
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
        """Record the intent of a reduce-only order before it is sent; return its client order id.

        Parameters
        ----------
        side : str
            ``"buy"`` or ``"sell"``.
        qty : float
            Quantity, base units; > 0.
        purpose : str
            Why the order is sent (e.g. ``"stop_flatten"``), recorded with the intent.
        """

    def order_filled(self, fill: Fill, purpose: str) -> None:
        """Record the fill of an order announced by :meth:`order_intent`.

        Parameters
        ----------
        fill : Fill
            The venue's fill.
        purpose : str
            The purpose given to :meth:`order_intent`.
        """

    def order_failed(self, client_order_id: str) -> None:
        """Forget an intent whose order failed (the venue is asked again on restart if unsure).

        Parameters
        ----------
        client_order_id : str
            The id :meth:`order_intent` returned.
        """


def halt_marker_path(out_dir: Path) -> Path:
    """Return ``<out_dir>/HALTED_DRAWDOWN``, the file that blocks restarts after a drawdown emergency.

    Parameters
    ----------
    out_dir : pathlib.Path
        The production folder, ``runs/<train_id>/produccion``.
    """
    return Path(out_dir) / HALT_MARKER


def check_not_halted(out_dir: Path) -> None:
    """Refuse to start while a drawdown emergency's marker file exists.

    Parameters
    ----------
    out_dir : pathlib.Path
        The production folder, ``runs/<train_id>/produccion``.

    Raises
    ------
    ConfigError
        If ``<out_dir>/HALTED_DRAWDOWN`` exists; the message names the file to remove.
    """
    marker = halt_marker_path(out_dir)
    if marker.exists():
        first = marker.read_text(encoding="utf-8", errors="replace").splitlines()[:1]
        raise ConfigError(f"trading for this model is halted after a drawdown emergency ({' '.join(first)}). "
                          f"Review the emergencias CSV and the account, then delete {marker} by hand to allow "
                          f"a restart")


@dataclasses.dataclass
class EmergencyReport:
    """What the emergency protocol did.

    Attributes
    ----------
    cause : {"drawdown", "critical_error", "connection", "bad_data", "order_rejected", "stale_feed", "stop_request"}
        Why it ran.
    detail : str
        The triggering error or figures.
    peak_equity_usd, equity_usd : float
        Session peak and last known equity, USDT.
    orders_cancelled : int
        Open orders cancelled (-1 if the cancel failed).
    positions_closed : dict of str to float
        Symbol to the signed quantity closed, base units.
    confirmations : list of str
        The venue's answers (order ids, statuses) and any step that failed.
    flat_confirmed : bool
        True when the venue reported no open position before the poll timeout.
    marker_path : pathlib.Path or None
        The halt marker written (drawdown only).
    """

    cause: str
    detail: str
    peak_equity_usd: float
    equity_usd: float
    orders_cancelled: int = 0
    positions_closed: dict[str, float] = dataclasses.field(default_factory=dict)
    confirmations: list[str] = dataclasses.field(default_factory=list)
    flat_confirmed: bool = False
    marker_path: Path | None = None


class EmergencyProtocol:
    """Flatten the account and stop.

    Parameters
    ----------
    broker : Broker
        The account to flatten.
    out_dir : pathlib.Path
        Where ``emergencias_<ts>.csv`` and the halt marker go.
    session_ts : str
        The session's timestamp, ``YYYYMMDD_HHMMSS``.
    retry : RetryPolicy
        Retry of each exchange call.
    poll_interval_s, poll_timeout_s : float
        How often and how long to poll positions until flat, seconds.
    sleep : callable
        Injectable sleep.
    journal : OrderJournal, optional
        Records each closing order's intent before it is sent and its fill after.

    Attributes
    ----------
    state : TradingState
        ``HALTED`` once :meth:`run` started.
    """

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

        Each exchange call is retried; a step that still fails is recorded and the
        protocol goes on to the next one. Never raises for an exchange failure.

        Parameters
        ----------
        cause : {"drawdown", "critical_error", "connection", "bad_data", "order_rejected", "stale_feed"}
            What triggered the emergency; a drawdown cause also writes the halt marker.
        detail : str
            Free text recorded with the cause (the failing call, the drawdown reached).
        peak_equity_usd : float
            Peak equity of the session, USDT.
        equity_usd : float
            Equity when the emergency began, USDT.

        Returns
        -------
        EmergencyReport
            Also written as one row of ``emergencias_<ts>.csv``.
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
        """Close every position reduce-only and poll until the venue reports none.

        Progress (closed quantities, venue answers, failures) is added to ``rep``; each
        closing order goes through the journal (intent before, fill after).

        Parameters
        ----------
        rep : EmergencyReport
            Collects what was done.
        purpose : str
            ``emergency_close`` or ``stop_flatten``, recorded with each fill.

        Returns
        -------
        bool
            True when flat was confirmed before ``poll_timeout_s``.
        """
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
        """Record a stop whose flatten was not confirmed within ``timeout_s`` (the venue did not answer in time).

        Parameters
        ----------
        timeout_s : float
            The stop's time limit, seconds.
        position_qty : float
            Last known position, base units.
        peak_equity_usd, equity_usd : float
            Session peak and last known equity, USDT.
        """
        rep = EmergencyReport("stop_request", f"stop requested; the flatten was not confirmed within "
                                              f"stop_timeout_s={timeout_s:g} s (venue unreachable or slow); last "
                                              f"known position {position_qty:g}", peak_equity_usd, equity_usd)
        rep.confirmations.append("flatten NOT CONFIRMED at the stop deadline; check the account by hand")
        logger.critical("live/stop: flatten not confirmed within {:g} s; recorded in {}", timeout_s, self.path)
        self.record(rep)

    def record(self, rep: EmergencyReport) -> None:
        """Append ``rep`` as one row of ``emergencias_<ts>.csv`` (created with its header).

        Parameters
        ----------
        rep : EmergencyReport
            What was done; ``flat_confirmed`` False records a flatten that failed.
        """
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
