"""Per-step callback payload and end-of-session statistics of the trader."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger

from quantnb.agent import Fill
from quantnb.live._audit import AuditRow
from quantnb.live._emergency import EmergencyReport
from quantnb.live._guard import bar_iso
from quantnb.live._types import AccountState, Bar

__all__ = ["StepInfo", "SessionStats"]


@dataclasses.dataclass(frozen=True, slots=True)
class StepInfo:
    """What the trader did on one closed candle (passed to ``on_step``).

    Attributes
    ----------
    step : int
        0-based index of the candle in the session.
    bar : Bar
        The closed candle.
    observation : np.ndarray or None, shape (n_obs,), float32
        The agent's input (None while features warm up).
    action_raw, target_frac : float
        Policy output and the target position fraction after risk clipping (nan if none).
    fill : Fill or None
        The order's fill, when one was sent.
    account : AccountState
        Account after the step.
    peak_equity_usd, drawdown_frac : float
        Session peak equity (USDT) and ``1 - equity / peak``.
    decision_latency_ms : float
        Closed candle in hand to order handed to the broker, milliseconds.
    reason : str
        Why no order was sent (``dead band``, ``change below the minimum notional``, ...).
    event : str
        ``bar``, ``rejected``, ``order_rejected``, ``stop_flatten``, ``emergency_close`` or ``reconcile_fill``
        (see :class:`AuditRow`).
    gap_before : bool
        Candles are missing before this one; the features warm up again.
    funding_usd : float
        Funding booked on this candle, USDT (< 0: received); nan where the venue books it.
    """

    step: int
    bar: Bar
    observation: np.ndarray | None
    action_raw: float
    target_frac: float
    fill: Fill | None
    account: AccountState
    peak_equity_usd: float
    drawdown_frac: float
    decision_latency_ms: float
    reason: str
    event: str = "bar"
    gap_before: bool = False
    funding_usd: float = 0.0

    def audit_row(self) -> AuditRow:
        """Return the step's ``registro`` row (written now: ``timestamp`` is the wall clock)."""
        f, a = self.fill, self.account
        return AuditRow(
            timestamp=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"), step=self.step,
            bar_ts=bar_iso(self.bar.open_time_ms), close=self.bar.close, action_raw=self.action_raw,
            target_frac=self.target_frac, side=f.side if f else "", qty=abs(f.qty) if f else 0.0,
            fill_price=f.price_usd if f else math.nan, fee_usd=f.fee_usd if f else 0.0, position=a.position_qty,
            balance_usd=a.balance_usd, equity_usd=a.equity_usd, peak_equity_usd=self.peak_equity_usd,
            drawdown_frac=self.drawdown_frac, decision_latency_ms=round(self.decision_latency_ms, 4),
            event=self.event, client_order_id=f.client_order_id if f else "", gap_before=int(self.gap_before),
            note=self.reason, funding_usd=self.funding_usd)


@dataclasses.dataclass
class SessionStats:
    """Summary of a trading session.

    Attributes
    ----------
    session_ts : str
        ``YYYYMMDD_HHMMSS`` (UTC) naming the session's files.
    steps, trades : int
        Closed candles processed and orders filled.
    fees_usd, pnl_usd : float
        Commissions paid and equity change over the session, USDT.
    funding_usd : float or None
        Funding paid over the session, USDT (< 0: received), as the research environment books it
        for the same bars; None where the venue books it (testnet, live).
    gross_pnl_usd : float or None
        ``pnl_usd + fees_usd + funding_usd``: the PnL before fees and funding, USDT.
    start_equity_usd, end_equity_usd : float
        Equity at start and end, USDT.
    return_frac, max_drawdown_frac : float
        ``end / start - 1`` and the largest drawdown from peak equity.
    stopped_by : str
        ``end_of_data``, ``max_steps``, ``duration``, ``stop_request`` or ``emergency:<cause>``.
    emergency : EmergencyReport or None
        Set when the emergency protocol ran.
    registro_path : pathlib.Path
        The per-candle audit CSV.
    emergencias_path : pathlib.Path or None
        The emergency CSV, when written.
    latency_p50_ms, latency_p99_ms : float
        Decision latency percentiles, milliseconds.
    elapsed_s, bars_per_s : float
        Wall time of the loop and its throughput.
    flattened_on_stop : bool or None
        Whether an orderly stop closed the positions (None if not asked).
    resumed : bool
        The session continued a recorded state (restart after a kill, a stop or an emergency).
    state_path, reconciliation_path : pathlib.Path or None
        The state file and, for a resumed session, the reconciliation CSV.
    bad_bars, gaps : int
        Candles rejected and gaps met.
    orders_rejected : int
        Orders the venue refused (each skipped, with a registro row ``order_rejected``).
    feed_fallbacks : int
        REST fallbacks asked by the stale-feed watchdog.
    """

    session_ts: str
    steps: int = 0
    trades: int = 0
    fees_usd: float = 0.0
    pnl_usd: float = 0.0
    funding_usd: float | None = 0.0
    gross_pnl_usd: float | None = None
    start_equity_usd: float = float("nan")
    end_equity_usd: float = float("nan")
    return_frac: float = float("nan")
    max_drawdown_frac: float = 0.0
    stopped_by: str = ""
    emergency: EmergencyReport | None = None
    registro_path: Path | None = None
    emergencias_path: Path | None = None
    latency_p50_ms: float = float("nan")
    latency_p99_ms: float = float("nan")
    elapsed_s: float = 0.0
    bars_per_s: float = 0.0
    flattened_on_stop: bool | None = None
    resumed: bool = False
    state_path: Path | None = None
    reconciliation_path: Path | None = None
    bad_bars: int = 0
    gaps: int = 0
    orders_rejected: int = 0
    feed_fallbacks: int = 0

    def book_funding(self, info: StepInfo, before_usd: float | None, after_usd: float | None) -> StepInfo:
        """Add the funding the broker booked during a step to the session and return the step with it.

        Parameters
        ----------
        info : StepInfo
            The step.
        before_usd, after_usd : float or None
            :meth:`Broker.funding_paid_usd` before and after the step, USDT; None: the venue books funding.

        Returns
        -------
        StepInfo
            With ``funding_usd`` set (nan where the venue books it).
        """
        if before_usd is None or after_usd is None:
            self.funding_usd = None
            return dataclasses.replace(info, funding_usd=math.nan)
        if after_usd == before_usd:
            return info
        if self.funding_usd is not None:
            self.funding_usd += after_usd - before_usd
        return dataclasses.replace(info, funding_usd=after_usd - before_usd)

    def finish(self, max_drawdown_frac: float, latencies_ms: list[float], elapsed_s: float) -> None:
        """Fill the end-of-session figures (PnL, return, latency percentiles, throughput) and log them.

        Parameters
        ----------
        max_drawdown_frac : float
            Largest drawdown from peak equity seen.
        latencies_ms : list of float
            Decision latency of each step, milliseconds.
        elapsed_s : float
            Wall time of the loop, seconds.
        """
        self.max_drawdown_frac = max_drawdown_frac
        if math.isnan(self.end_equity_usd):
            self.end_equity_usd = self.start_equity_usd
        self.pnl_usd = self.end_equity_usd - self.start_equity_usd
        self.return_frac = self.end_equity_usd / self.start_equity_usd - 1.0 if self.start_equity_usd else math.nan
        if self.funding_usd is not None:
            self.gross_pnl_usd = self.pnl_usd + self.fees_usd + self.funding_usd
        if latencies_ms:
            self.latency_p50_ms, self.latency_p99_ms = (float(x) for x in np.percentile(latencies_ms, [50, 99]))
        self.elapsed_s = elapsed_s
        self.bars_per_s = self.steps / elapsed_s if elapsed_s > 0 else 0.0
        logger.info("live/session: stopped_by={} steps={} trades={} live/pnl_usd={:.2f} live/fees_usd={:.2f} "
                    "live/funding_usd={} live/max_drawdown_frac={:.4f} live/latency_p99_ms={:.3f}", self.stopped_by,
                    self.steps, self.trades, self.pnl_usd, self.fees_usd, self.funding_usd, self.max_drawdown_frac,
                    self.latency_p99_ms)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (for ``run.json`` and the log)."""
        out = dataclasses.asdict(self)
        out["emergency"] = None if self.emergency is None else {
            k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self.emergency).items()}
        for k in ("registro_path", "emergencias_path", "state_path", "reconciliation_path"):
            out[k] = None if out[k] is None else str(out[k])
        return out
