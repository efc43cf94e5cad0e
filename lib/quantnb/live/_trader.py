"""The trading loop: one decision per closed candle, audited, with risk checks and the emergency protocol."""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from loguru import logger

from quantnb.errors import QuantnbError, TemporaryError
from quantnb.live._audit import REGISTRO_COLUMNS, AuditRow, CsvAppender
from quantnb.live._broker import Broker
from quantnb.live._emergency import EmergencyCause, EmergencyProtocol, EmergencyReport, check_not_halted
from quantnb.live._feed import DataProvider
from quantnb.live._inference import deterministic_policy
from quantnb.live._retry import RetryPolicy
from quantnb.live._risk import OrderPlan, RiskControl, RiskLimits
from quantnb.live._stats import SessionStats, StepInfo
from quantnb.live._types import AccountState, Bar, Fill
from quantnb.rl import ActionInterpreter, IncrementalFeatures, ObservationBuilder, PortfolioState

__all__ = ["AgentLike", "Trader", "session_timestamp"]


class AgentLike(Protocol):
    """What the trader needs from an agent bundle (``quantnb.rl.AgentBundle`` provides it)."""

    model: Any
    observation_builder: ObservationBuilder
    action_interpreter: ActionInterpreter

    def new_feature_stream(self) -> IncrementalFeatures:
        """Return fresh incremental features matching the training features."""


def session_timestamp() -> str:
    """Return the current UTC time as ``YYYYMMDD_HHMMSS``, the suffix of a session's files."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d_%H%M%S")


def _unique_ts(out_dir: Path) -> str:
    """Return a session timestamp whose CSV files do not exist yet (``-2``, ``-3`` on clashes)."""
    base = ts = session_timestamp()
    n = 1
    while (out_dir / f"registro_{ts}.csv").exists() or (out_dir / f"emergencias_{ts}.csv").exists():
        n += 1
        ts = f"{base}-{n}"
    return ts


def _iso_ms(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds")


class Trader:
    """Trade one symbol with an agent: per closed candle, account, drawdown, decision, order, audit.

    Parameters
    ----------
    agent : AgentLike
        Model (``predict(obs, deterministic=True)``), observation builder, action
        interpreter and feature factory, normally from the agent bundle.
    provider : DataProvider
        Closed candles (replay or exchange stream).
    broker : Broker
        Paper or exchange account.
    limits : RiskLimits
        Drawdown and position limits.
    out_dir : pathlib.Path
        ``runs/<train_id>/produccion``: ``registro_<ts>.csv``, ``emergencias_<ts>.csv`` and
        the halt marker go here.
    retry : RetryPolicy
        Retry of every exchange call (3 retries 1 s apart by default).
    on_step : callable, optional
        Called with a :class:`StepInfo` after each candle (the stage updates its heartbeat).
    max_steps : int, optional
        Stop after this many candles.
    duration_s : float, optional
        Stop after this many seconds of wall time.
    session_ts : str, optional
        File suffix; :func:`session_timestamp` by default.
    poll_s : float
        Longest wait for a candle before the stop flag is checked again, seconds.
    emergency_poll_timeout_s, emergency_poll_interval_s : float
        How long and how often the emergency protocol polls for flat, seconds.
    """

    def __init__(self, agent: AgentLike, provider: DataProvider, broker: Broker, limits: RiskLimits,
                 out_dir: Path, *, retry: RetryPolicy | None = None,
                 on_step: Callable[[StepInfo], None] | None = None, max_steps: int | None = None,
                 duration_s: float | None = None, session_ts: str | None = None, poll_s: float = 0.5,
                 emergency_poll_timeout_s: float = 30.0, emergency_poll_interval_s: float = 0.5):
        self.agent, self.provider, self.broker, self.limits = agent, provider, broker, limits
        self.out_dir = Path(out_dir)
        self.retry = retry or RetryPolicy()
        self.on_step = on_step
        self.max_steps, self.duration_s, self.poll_s = max_steps, duration_s, poll_s
        self.session_ts = session_ts or _unique_ts(self.out_dir)
        self.registro_path = self.out_dir / f"registro_{self.session_ts}.csv"
        self.emergency = EmergencyProtocol(broker, self.out_dir, self.session_ts, self.retry,
                                           poll_interval_s=emergency_poll_interval_s,
                                           poll_timeout_s=emergency_poll_timeout_s, sleep=self.retry.sleep)
        self._stop = threading.Event()
        self._flatten_on_stop = False
        self._order_tag = uuid.uuid4().hex[:10]
        self._equity0 = math.nan
        self.risk = RiskControl(limits, broker.rules)

    def request_stop(self, flatten: bool = False) -> None:
        """Ask the loop to stop after the current candle (safe from a signal handler).

        Parameters
        ----------
        flatten : bool
            Close all positions (reduce-only) and cancel orders before returning.
        """
        self._flatten_on_stop = self._flatten_on_stop or flatten
        self._stop.set()

    def run(self) -> SessionStats:
        """Run the session until the data ends, a limit is reached, a stop is requested or an emergency.

        Returns
        -------
        SessionStats
            Also when the emergency protocol ran (``stats.emergency``): exchange and risk
            failures end the session in order rather than raising.

        Raises
        ------
        ConfigError
            Before any order: halt marker present, symbol unknown, keys rejected.
        TemporaryError
            If the venue cannot be reached during start-up.
        Exception
            A programming error inside the loop is re-raised after the emergency protocol.
        """
        check_not_halted(self.out_dir)
        self.retry.call(self.broker.connect)
        self.risk.rules = self.broker.rules
        self._predict = deterministic_policy(self.agent.model)
        feats = self.agent.new_feature_stream()
        try:
            for bar in self.provider.warmup():
                feats.update(_bar_fields(bar))
            acct = self.retry.call(self.broker.account)
        except BaseException:
            self.provider.close()
            raise
        stats = SessionStats(session_ts=self.session_ts, registro_path=self.registro_path)
        stats.start_equity_usd = self._equity0 = acct.equity_usd
        latencies: list[float] = []
        t_start = time.perf_counter()
        logger.info("live/session: start equity_usd={:.2f} registro={}", acct.equity_usd, self.registro_path)
        with CsvAppender(self.registro_path, REGISTRO_COLUMNS) as registro:
            try:
                stats.stopped_by = self._loop(feats, registro, stats, latencies, t_start)
            except TemporaryError as err:
                self._emergency(stats, "connection", str(err))
            except QuantnbError as err:
                self._emergency(stats, "critical_error", f"{type(err).__name__}: {err}")
            except Exception as err:
                self._emergency(stats, "critical_error", f"{type(err).__name__}: {err}")
                raise
            finally:
                self.provider.close()
        if stats.stopped_by == "stop_request" and self._flatten_on_stop:
            rep = EmergencyReport("stop_request", "orderly stop", self.risk.peak_equity_usd, stats.end_equity_usd)
            rep.orders_cancelled = self._safe(self.broker.cancel_all, -1)
            stats.flattened_on_stop = self.emergency.flatten(rep)
        self._finish(stats, latencies, time.perf_counter() - t_start)
        return stats

    def _loop(self, feats: IncrementalFeatures, registro: CsvAppender, stats: SessionStats, latencies: list[float],
              t_start: float) -> str:
        step = 0
        while True:
            if self._stop.is_set():
                return "stop_request"
            if self.max_steps is not None and step >= self.max_steps:
                return "max_steps"
            if self.duration_s is not None and time.perf_counter() - t_start >= self.duration_s:
                return "duration"
            bar = self.provider.next_bar(self.poll_s)
            if bar is None:
                if self.provider.finished:
                    return "end_of_data"
                continue
            info = self._step(step, bar, feats, time.perf_counter())
            latencies.append(info.decision_latency_ms)
            registro.write(self._row(info))
            stats.steps = step + 1
            stats.end_equity_usd = info.account.equity_usd
            if info.fill is not None:
                stats.trades += 1
                stats.fees_usd += info.fill.fee_usd
                logger.info("live/fill step={} {} qty={:g} price_usd={:.2f} fee_usd={:.4f} order={}", step,
                            info.fill.side, info.fill.qty, info.fill.price, info.fill.fee_usd, info.fill.order_id)
            if self.on_step is not None:
                self.on_step(info)
            if info.reason == "drawdown limit":
                self._emergency(stats, "drawdown", f"drawdown {info.drawdown_frac:.4f} >= max_drawdown_frac "
                                                   f"{self.limits.max_drawdown_frac}")
                return stats.stopped_by
            step += 1

    def _step(self, step: int, bar: Bar, feats: IncrementalFeatures, t0: float) -> StepInfo:
        risk = self.risk
        self.broker.on_bar(bar.close, bar.next_open)
        acct = self.retry.call(self.broker.account)
        breached = risk.update_equity(acct.equity_usd)
        feats.update(_bar_fields(bar))
        win = feats.window_array()
        if breached or win is None:
            reason = "drawdown limit" if breached else "features warming up"
            return self._info(step, bar, None, math.nan, math.nan, None, acct, t0, reason, time.perf_counter())
        state = PortfolioState.from_account(
            position_qty=acct.position_qty, avg_entry_price_usd=acct.entry_price, equity_usd=acct.equity_usd,
            initial_equity_usd=self._equity0, mark_price_usd=bar.close)
        obs = self.agent.observation_builder.build(win, state)
        action = self._predict(obs)
        decision = self.agent.action_interpreter.decide(action, state.position_frac)
        if decision.rebalance:
            plan = risk.plan(decision.target_frac, acct, bar.close, system_ok=not self._stop.is_set())
        else:
            plan = OrderPlan(None, 0.0, decision.target_frac, "dead band")
        fill = None
        latency_t = time.perf_counter()
        if plan.side is not None:
            fill = self.retry.call(self.broker.market_order, plan.side, plan.qty,
                                   client_order_id=f"qnb-{self._order_tag}-{step}")
            if fill.qty <= 0:
                fill = None
            acct = self._after_fill(acct, fill)
        return self._info(step, bar, obs, decision.action_raw, plan.target_frac, fill, acct, t0, plan.reason,
                          latency_t)

    def _after_fill(self, acct: AccountState, fill: Fill | None) -> AccountState:
        if fill is None:
            return acct
        if self.broker.cheap_account:
            return self.broker.account()
        pos = acct.position_qty + fill.signed_qty
        slip_cost = (fill.price - acct.mark_price) * fill.signed_qty if acct.mark_price else 0.0
        return AccountState(acct.balance_usd - fill.fee_usd, acct.equity_usd - fill.fee_usd - slip_cost, pos,
                            acct.entry_price if pos * acct.position_qty > 0 else fill.price, acct.mark_price)

    def _info(self, step: int, bar: Bar, obs: np.ndarray | None, action_raw: float, target_frac: float,
              fill: Fill | None, acct: AccountState, t0: float, reason: str, t_decided: float) -> StepInfo:
        return StepInfo(step, bar, obs, action_raw, target_frac, fill, acct, self.risk.peak_equity_usd,
                        self.risk.drawdown_frac, (t_decided - t0) * 1e3, reason)

    @staticmethod
    def _row(info: StepInfo) -> AuditRow:
        f, a = info.fill, info.account
        return AuditRow(
            timestamp=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"), step=info.step,
            bar_ts=_iso_ms(info.bar.open_time_ms), close=info.bar.close, action_raw=info.action_raw,
            target_frac=info.target_frac, side=f.side if f else "", qty=f.qty if f else 0.0,
            fill_price=f.price if f else math.nan, fee_usd=f.fee_usd if f else 0.0, position=a.position_qty,
            balance_usd=a.balance_usd, equity_usd=a.equity_usd, peak_equity_usd=info.peak_equity_usd,
            drawdown_frac=info.drawdown_frac, decision_latency_ms=round(info.decision_latency_ms, 4))

    def _emergency(self, stats: SessionStats, cause: EmergencyCause, detail: str) -> None:
        peak = self.risk.peak_equity_usd
        equity = stats.end_equity_usd if not math.isnan(stats.end_equity_usd) else stats.start_equity_usd
        stats.emergency = self.emergency.run(cause, detail, peak_equity_usd=peak, equity_usd=equity)
        stats.emergencias_path = self.emergency.path
        stats.stopped_by = f"emergency:{cause}"

    def _safe(self, fn: Callable[[], int], default: int) -> int:
        try:
            return self.retry.call(fn)
        except QuantnbError as err:
            logger.error("live/session: {} failed during the orderly stop: {}", getattr(fn, "__name__", fn), err)
            return default

    def _finish(self, stats: SessionStats, latencies: list[float], elapsed_s: float) -> None:
        stats.max_drawdown_frac = self.risk.max_drawdown_frac_seen
        if math.isnan(stats.end_equity_usd):
            stats.end_equity_usd = stats.start_equity_usd
        stats.pnl_usd = stats.end_equity_usd - stats.start_equity_usd
        stats.return_frac = stats.end_equity_usd / stats.start_equity_usd - 1.0 if stats.start_equity_usd else math.nan
        if latencies:
            stats.latency_p50_ms, stats.latency_p99_ms = (float(x) for x in np.percentile(latencies, [50, 99]))
        stats.elapsed_s = elapsed_s
        stats.bars_per_s = stats.steps / elapsed_s if elapsed_s > 0 else 0.0
        logger.info("live/session: stopped_by={} steps={} trades={} live/pnl_usd={:.2f} live/fees_usd={:.2f} "
                    "live/max_drawdown_frac={:.4f} live/latency_p99_ms={:.3f}", stats.stopped_by, stats.steps,
                    stats.trades, stats.pnl_usd, stats.fees_usd, stats.max_drawdown_frac, stats.latency_p99_ms)


def _bar_fields(bar: Bar) -> dict[str, Any]:
    fields: dict[str, Any] = {"ts": bar.open_time_ms, "close": bar.close, "open": bar.open, "high": bar.high,
                              "low": bar.low, "volume": bar.volume}
    if bar.extras:
        fields.update(bar.extras)
    return fields

