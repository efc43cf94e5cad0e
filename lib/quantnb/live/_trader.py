"""The trading loop: one decision per closed candle, audited, with risk checks and the emergency protocol."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from loguru import logger

from quantnb.agent import ActionInterpreter, Fill, IncrementalFeatures, ObservationBuilder, PortfolioState
from quantnb.errors import OrderRejectedError, QuantnbError, TemporaryError
from quantnb.live._audit import REGISTRO_COLUMNS, CsvAppender, unique_session_ts
from quantnb.live._broker import Broker
from quantnb.live._emergency import EmergencyCause, EmergencyProtocol, EmergencyReport, check_not_halted
from quantnb.live._feed import DataProvider
from quantnb.live._guard import BadBarError, bar_iso, validate_bar
from quantnb.live._inference import deterministic_policy
from quantnb.live._paper import PaperBroker
from quantnb.live._resume import cut_registro, load_recorded_state, reconcile
from quantnb.live._risk import OrderPlan, RiskControl, RiskLimits
from quantnb.live._settings import SessionSettings
from quantnb.live._state import PendingOrder, SessionLock, StateStore, TraderState, TradingState
from quantnb.live._stats import SessionStats, StepInfo
from quantnb.live._types import AccountState, Bar
from quantnb.live._warmup import FeatureFeed, warm_up
from quantnb.live._watchdog import FeedWatchdog, StopGuard, missing_features
from quantnb.retry import RetryPolicy

if TYPE_CHECKING:
    from quantnb.agent import AgentFeatureStream

__all__ = ["AgentLike", "Trader"]

_S = SessionSettings  # the session defaults, written once there


class AgentLike(Protocol):
    """What the trader needs from an agent bundle (``quantnb.agent.AgentBundle`` provides it)."""

    model: Any
    observation_builder: ObservationBuilder
    action_interpreter: ActionInterpreter

    def new_feature_stream(self) -> IncrementalFeatures | AgentFeatureStream:
        """Return fresh incremental features matching the training features."""


class Trader:
    """Trade one symbol with an agent: per closed candle, account, drawdown, decision, order, audit, state.

    After every candle the state (paper account, peak equity, last candle, trading state,
    in-flight orders) is written atomically to ``state_<mode>.json``; an order's intent with
    its client order id is written before the order is sent. A trader started again for the
    same folder and mode continues that state (see :mod:`quantnb.live._resume`) unless
    ``fresh_start``.

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
        ``runs/<train_id>/produccion``: ``registro_<ts>.csv``, ``emergencias_<ts>.csv``,
        ``reconciliacion_<ts>.csv``, ``state_<mode>.json`` and the halt marker go here.
    retry : RetryPolicy, optional
        Retry of every exchange call (:class:`quantnb.retry.RetryPolicy` by default).
    on_step : callable, optional
        Called with a :class:`StepInfo` after each candle (the stage updates its heartbeat).
    max_steps : int, optional
        Stop after this many candles (of this process).
    duration_s : float, optional
        Stop after this many seconds of wall time.
    session_ts : str, optional
        File suffix of a new session; :func:`session_timestamp` by default. A resumed
        session keeps its recorded suffix (it appends to its registro).
    poll_s : float
        Longest wait for a candle before the stop flag is checked again, seconds.
    emergency_poll_timeout_s, emergency_poll_interval_s : float
        How long and how often the emergency protocol polls for flat, seconds.
    mode : {"replay", "testnet", "live"}
        Names the state file; a paper broker's state is the truth, a venue's is reconciled.
    fresh_start : bool
        Set aside a recorded state deliberately (logged at WARNING): new account, new peak.
    bar_interval_ms : int
        Candle length, ms; a larger step between candles is a gap.
    max_bad_bars : int
        Consecutive rejected candles that trigger the emergency protocol (cause ``bad_data``).
    sleep : callable
        Injectable sleep (the emergency protocol's polling).
    run_id : str
        The run's id, recorded in the session lock (a second session is refused naming it).
    max_order_rejections : int
        Consecutive bars whose order the venue refused (e.g. ``-2019 Margin is insufficient``)
        that trigger the emergency protocol (cause ``order_rejected``). A single rejection is a
        registro row (event ``order_rejected``) and the bar is skipped.
    stale_bar_s : float, optional
        Candle length in wall-clock seconds for the stale-feed watchdog; None (replay) turns it off.
    stale_warn_bars, stale_emergency_bars : int
        Missed bars (no closed candle, or none carrying every needed feature) after which the
        trader logs a WARNING and asks the provider for a REST fallback (again at each further
        missed bar), and after which it runs the emergency protocol (cause ``stale_feed``).
    needed_columns : sequence of str
        Candle extras the agent's features are computed from (the live book's columns); a candle
        lacking one counts as missed for the watchdog.
    stop_timeout_s : float
        After a stop request the state is saved as ``reducing`` at once; if the stop (and its
        flatten) is not done within this many seconds, an emergencias row records the unconfirmed
        flatten. Keep it below the runner's kill grace (30 s).
    on_warmup : callable, optional
        Called with ``(done, total)`` candles while the history warms the features up (the
        stage shows it as the run's progress message), and once at the end.
    """

    def __init__(self, agent: AgentLike, provider: DataProvider, broker: Broker, limits: RiskLimits,
                 out_dir: Path, *, retry: RetryPolicy | None = None,
                 on_step: Callable[[StepInfo], None] | None = None, max_steps: int | None = None,
                 duration_s: float | None = None, session_ts: str | None = None, poll_s: float = 0.5,
                 emergency_poll_timeout_s: float = 30.0, emergency_poll_interval_s: float = 0.5,
                 mode: str = _S.mode, fresh_start: bool = _S.fresh_start, bar_interval_ms: int = 60_000,
                 max_bad_bars: int = _S.max_bad_bars, sleep: Callable[[float], None] = time.sleep, run_id: str = "",
                 max_order_rejections: int = _S.max_order_rejections, stale_bar_s: float | None = None,
                 stale_warn_bars: int = _S.stale_warn_bars, stale_emergency_bars: int = _S.stale_emergency_bars,
                 needed_columns: tuple[str, ...] = (), stop_timeout_s: float = _S.stop_timeout_s,
                 on_warmup: Callable[[int, int], None] | None = None):
        self.agent, self.provider, self.broker, self.limits = agent, provider, broker, limits
        self.out_dir = Path(out_dir)
        self.retry = retry or RetryPolicy(what="live/retry")
        self.on_step, self.on_warmup = on_step, on_warmup
        self.max_steps, self.duration_s, self.poll_s = max_steps, duration_s, poll_s
        self.mode, self.fresh_start = mode, fresh_start
        self.bar_interval_ms, self.max_bad_bars = int(bar_interval_ms), max(1, int(max_bad_bars))
        self.store = StateStore(self.out_dir, mode)
        self.lock = SessionLock(self.out_dir, mode)
        self.run_id = run_id
        self._new_ts = session_ts
        self.session_ts = session_ts or ""
        self.registro_path = self.out_dir / f"registro_{self.session_ts}.csv"
        self._poll = (emergency_poll_interval_s, emergency_poll_timeout_s, sleep)
        self.trading_state = TradingState.ACTIVE
        self._flatten_on_stop = False
        self.risk = RiskControl(limits, broker.rules)
        self.st: TraderState | None = None
        self._registro: CsvAppender | None = None
        self._acct: AccountState | None = None
        self._acct_estimated = False  # the account after a venue fill is estimated (realized PnL not read back)
        self._bar: Bar | None = None
        self._stats: SessionStats | None = None
        self.max_order_rejections, self._rejections_in_row = max(1, int(max_order_rejections)), 0
        self.stale_bar_s, self.needed_columns = stale_bar_s, tuple(needed_columns)
        self.stale_warn_bars, self.stale_emergency_bars = int(stale_warn_bars), int(stale_emergency_bars)
        self.stop_timeout_s = stop_timeout_s
        self._save_lock = threading.RLock()  # the stop guard's thread saves too
        self._stop_guard: StopGuard | None = None

    def request_stop(self, flatten: bool = False) -> None:
        """Ask the loop to stop after the current candle (safe from a signal handler): state ``REDUCING``.

        Parameters
        ----------
        flatten : bool
            Close all positions (reduce-only) and cancel orders before returning.
        """
        self._flatten_on_stop = self._flatten_on_stop or flatten
        if self.trading_state is TradingState.ACTIVE:
            self.trading_state = TradingState.REDUCING
        if self._stop_guard is None and self.st is not None:
            self._stop_guard = StopGuard(self.stop_timeout_s, self._save, self._record_unconfirmed_stop)

    def _record_unconfirmed_stop(self) -> None:
        """Record in emergencias that the stop's flatten was not confirmed by the stop guard's deadline."""
        a = self._acct
        self.emergency.record_unconfirmed_stop(self.stop_timeout_s, a.position_qty if a else math.nan,
                                               self.risk.peak_equity_usd, a.equity_usd if a else math.nan)

    # --- session set-up -----------------------------------------------------------------
    def _begin(self, rec: TraderState | None) -> None:
        if rec is None:
            ts = self._new_ts or unique_session_ts(self.out_dir)
            self.st = TraderState(mode=self.mode, session_ts=ts, order_tag=uuid.uuid4().hex[:10])
        else:
            self.st = rec
            rec.restarts += 1
            self.risk.restore(rec.peak_equity_usd, rec.max_drawdown_frac_seen)
            if isinstance(self.broker, PaperBroker) and rec.paper is not None:
                self.broker.restore(rec.paper, rec.last_close)
            logger.warning("live/state: resuming {} session {} at step {} after bar {} (restart {}): equity_usd={} "
                           "peak_equity_usd={} state={}", self.mode, rec.session_ts, rec.step,
                           bar_iso(rec.last_bar_ms) if rec.last_bar_ms is not None else "none", rec.restarts,
                           rec.account.get("equity_usd"), rec.peak_equity_usd, rec.trading_state.value)
        self.session_ts = self.st.session_ts
        self.registro_path = self.out_dir / f"registro_{self.session_ts}.csv"
        if rec is not None:
            cut_registro(self.registro_path, rec.registro_bytes)
        interval_s, timeout_s, sleep = self._poll
        self.emergency = EmergencyProtocol(self.broker, self.out_dir, self.session_ts, self.retry,
                                           poll_interval_s=interval_s, poll_timeout_s=timeout_s, sleep=sleep,
                                           journal=self)

    def _save(self, snapshot: bool = False) -> None:
        with self._save_lock:
            self._save_locked(snapshot)

    def _save_locked(self, snapshot: bool) -> None:
        st = self.st
        assert st is not None
        st.trading_state = self.trading_state
        st.peak_equity_usd, st.max_drawdown_frac_seen = self.risk.peak_equity_usd, self.risk.max_drawdown_frac_seen
        if self._acct is not None:
            a = self._acct
            st.account = {"balance_usd": a.balance_usd, "equity_usd": a.equity_usd, "position_qty": a.position_qty,
                          "entry_price": a.entry_price,
                          "balance_estimated": float(self._acct_estimated)}
        if isinstance(self.broker, PaperBroker):
            st.paper = self.broker.snapshot()
        if self._registro is not None:
            st.registro_bytes = self._registro.tell()
        self.store.save(st, snapshot=snapshot)

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
            Before any order: another session of this folder and mode is running, halt marker
            present, symbol unknown, keys rejected, state file unreadable.
        TemporaryError
            If the venue cannot be reached during start-up.
        Exception
            A programming error inside the loop is re-raised after the emergency protocol.
        """
        self.lock.acquire(self.run_id, self._new_ts or "")
        try:
            self.store._remove_orphans()  # under the lock: no other writer
            return self._run()
        finally:
            if self._stop_guard is not None:
                self._stop_guard.done()
            self.store.close()
            self.lock.release()

    def _run(self) -> SessionStats:
        check_not_halted(self.out_dir)
        self.retry.call(self.broker.connect)
        self.risk.rules = self.broker.rules
        self._predict = deterministic_policy(self.agent.model)
        rec = load_recorded_state(self.store, fresh_start=self.fresh_start)
        self._begin(rec)
        st = self.st
        assert st is not None
        stats = self._stats = SessionStats(session_ts=self.session_ts, registro_path=self.registro_path,
                                           resumed=rec is not None, state_path=self.store.path)
        self._registro = CsvAppender(self.registro_path, REGISTRO_COLUMNS)
        feed = FeatureFeed(self.agent, self.bar_interval_ms)
        if st.last_bar_ms is not None:
            self.provider.resume_after(st.last_bar_ms)
        try:
            try:
                warm_up(feed, self.provider.warmup(), self._feed_only, self.on_warmup)
                if rec is not None:
                    stats.reconciliation_path = self.out_dir / f"reconciliacion_{self.session_ts}.csv"
                    found = reconcile(rec, self.broker, self.retry, stats.reconciliation_path,
                                      paper=isinstance(self.broker, PaperBroker))
                    st.pending_orders = []
                    for _purpose, fill in found.fills:
                        self._acct = found.account
                        self._write_fill_row("reconcile_fill", fill, found.account)
                    acct = found.account
                else:
                    acct = self.retry.call(self.broker.account)
                    st.equity0_usd = acct.equity_usd
                self._acct = acct
                if st.trading_state is TradingState.HALTED:
                    st.trading_state, st.halt_cause = TradingState.ACTIVE, ""
                self._save(snapshot=True)
            except BaseException:
                self.provider.close()
                raise
            stats.start_equity_usd = acct.equity_usd
            latencies: list[float] = []
            t_start = time.perf_counter()
            logger.info("live/session: start equity_usd={:.2f} registro={} state={}", acct.equity_usd,
                        self.registro_path, self.store.path)
            try:
                stats.stopped_by = self._loop(feed, stats, latencies, t_start)
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
                stats.flattened_on_stop = rep.flat_confirmed = self.emergency.flatten(rep, purpose="stop_flatten")
                if not rep.flat_confirmed:  # a failed flatten attempt is on record, not only in the log
                    rep.detail = "orderly stop: flatten NOT confirmed"
                    self.emergency.record(rep)
                    stats.emergencias_path = self.emergency.path
            if stats.stopped_by == "end_of_data":
                st.completed = True
            self._save(snapshot=True)
            stats.finish(self.risk.max_drawdown_frac_seen, latencies, time.perf_counter() - t_start)
        finally:
            self._registro.close()
        return stats

    # --- the loop -------------------------------------------------------------------------
    def _feed_only(self, feed: FeatureFeed, bar: Bar) -> None:
        """Warm-up and already-processed candles: features only, with the same bad-bar and gap rules."""
        try:
            validate_bar(bar, prev_ms=feed.last_ms, interval_ms=self.bar_interval_ms)
        except BadBarError as err:
            logger.warning("live/feed: warm-up {}", err)
            return
        if feed.push(bar):
            logger.warning("live/feed: gap before warm-up bar {}: features restart", bar_iso(bar.open_time_ms))

    def _loop(self, feed: FeatureFeed, stats: SessionStats, latencies: list[float], t_start: float) -> str:
        st = self.st
        assert st is not None
        n = 0
        watchdog = FeedWatchdog(self.stale_bar_s, self.stale_warn_bars, self.stale_emergency_bars) \
            if self.stale_bar_s else None
        while True:
            if self.trading_state is TradingState.REDUCING:
                return "stop_request"
            if self.max_steps is not None and n >= self.max_steps:
                return "max_steps"
            if self.duration_s is not None and time.perf_counter() - t_start >= self.duration_s:
                return "duration"
            bar = self.provider.next_bar(self.poll_s)
            if bar is None:
                if self.provider.finished:
                    return "end_of_data"
                if watchdog is not None and self._stale(watchdog, stats):
                    return stats.stopped_by
                continue
            if watchdog is not None:
                lacking = missing_features(bar.extras, self.needed_columns)
                if not lacking:
                    watchdog.fed()
                else:
                    logger.warning("live/feed: candle {} lacks {} that the agent needs (counted as missed)",
                                   bar_iso(bar.open_time_ms), lacking)
            if st.last_bar_ms is not None and bar.open_time_ms <= st.last_bar_ms:
                self._feed_only(feed, bar)  # processed before the restart
                continue
            paid = self.broker.funding_paid_usd()
            info = stats.book_funding(self._step(st.step, bar, feed, time.perf_counter()), paid,
                                      self.broker.funding_paid_usd())
            n += 1
            latencies.append(info.decision_latency_ms)
            self._commit(info, bar)
            stats.steps += 1
            stats.end_equity_usd = info.account.equity_usd
            stats.bad_bars += info.event == "rejected"
            stats.gaps += info.gap_before
            if info.fill is not None:
                f = info.fill
                logger.info("live/fill step={} {} qty={:g} price_usd={:.2f} fee_usd={:.4f} order={}", info.step,
                            f.side, abs(f.qty), f.price_usd, f.fee_usd, f.order_id)
            if self.on_step is not None:
                self.on_step(info)
            if info.reason == "drawdown limit":
                self._emergency(stats, "drawdown", f"drawdown {info.drawdown_frac:.4f} >= max_drawdown_frac "
                                                   f"{self.limits.max_drawdown_frac}")
                return stats.stopped_by
            if st.bad_bars_in_row >= self.max_bad_bars:
                self._emergency(stats, "bad_data", f"{st.bad_bars_in_row} bad bars in a row, last: {info.reason}")
                return stats.stopped_by
            if self._rejections_in_row >= self.max_order_rejections:
                self._emergency(stats, "order_rejected", f"{self._rejections_in_row} orders in a row refused by the "
                                                         f"venue (max_order_rejections), last: {info.reason}")
                return stats.stopped_by
            if watchdog is not None and self._stale(watchdog, stats):
                return stats.stopped_by

    def _stale(self, watchdog: FeedWatchdog, stats: SessionStats) -> bool:
        """Act on missed bars: WARNING and a REST fallback, then the emergency; return True when it ran."""
        verdict = watchdog.verdict()
        if verdict == "fallback":
            stats.feed_fallbacks += 1
            self.provider.fallback()
        elif verdict:
            self._emergency(stats, "stale_feed", verdict)
        return verdict not in ("", "fallback")

    def _commit(self, info: StepInfo, bar: Bar) -> None:
        """Write the step's registro row, then its state (the row is cut back on restart if the state is not)."""
        with self._save_lock:  # the stop guard saves from its thread: never between row and state
            st = self.st
            assert st is not None and self._registro is not None
            self._registro.write(info.audit_row())
            if info.fill is not None:
                self._count_fill(info.fill)
            st.pending_orders = []
            st.step = info.step + 1
            st.last_bar_ms = bar.open_time_ms
            if info.event != "rejected":
                st.last_close = bar.close
                self._bar = bar
            self._acct = info.account
            self._acct_estimated = info.fill is not None and not self.broker.cheap_account
            self._save()

    def _count_fill(self, fill: Fill) -> None:
        if self._stats is not None:
            self._stats.trades += 1
            self._stats.fees_usd += fill.fee_usd

    def _step(self, step: int, bar: Bar, feed: FeatureFeed, t0: float) -> StepInfo:
        st = self.st
        assert st is not None and self._acct is not None
        try:
            validate_bar(bar, prev_ms=feed.last_ms, interval_ms=self.bar_interval_ms)
        except BadBarError as err:
            st.bad_bars_in_row += 1
            logger.error("live/feed: {} ({} bad bar(s) in a row; the emergency runs at {})", err,
                         st.bad_bars_in_row, self.max_bad_bars)
            return StepInfo(step, bar, None, math.nan, math.nan, None, self._acct, self.risk.peak_equity_usd,
                            self.risk.drawdown_frac, (time.perf_counter() - t0) * 1e3, str(err), event="rejected")
        st.bad_bars_in_row = 0
        gap = feed.push(bar)
        if gap:
            logger.warning("live/feed: gap before bar {} ({} missing candle(s)): features restart; no decision "
                           "until they are warm", bar_iso(bar.open_time_ms),
                           (bar.open_time_ms - (self._bar.open_time_ms if self._bar else bar.open_time_ms))
                           // self.bar_interval_ms - 1)
        risk = self.risk
        self.broker.on_bar(bar.close, bar.next_open, bar=bar)
        acct = self.retry.call(self.broker.account)
        breached = risk.update_equity(acct.equity_usd)
        win = feed.window()
        if breached or win is None:
            reason = "drawdown limit" if breached else "features warming up"
            return self._info(step, bar, None, math.nan, math.nan, None, acct, t0, reason, time.perf_counter(), gap)
        state = PortfolioState.from_account(
            position_qty=acct.position_qty, avg_entry_price_usd=acct.entry_price, equity_usd=acct.equity_usd,
            initial_equity_usd=st.equity0_usd, mark_price_usd=bar.close)
        obs = self.agent.observation_builder.build(win, state)
        action = self._predict(obs)
        decision = self.agent.action_interpreter.decide(action, state.position_frac)
        if decision.rebalance:
            flying = self.broker.in_flight_qty()  # orders still in flight count as held (latency_bars)
            sized = dataclasses.replace(acct, position_qty=acct.position_qty + flying) if flying else acct
            plan = risk.plan(decision.target_frac, sized, bar.close, state=self.trading_state)
        else:
            plan = OrderPlan(None, 0.0, decision.target_frac, "dead band")
        fill = None
        latency_t = time.perf_counter()
        if plan.side is not None:
            cid = f"qnb-{st.order_tag}-{step}"
            st.pending_orders = [PendingOrder(cid, plan.side, plan.qty, False, step, bar.open_time_ms, "bar")]
            if not isinstance(self.broker, PaperBroker):  # a paper fill lives in this process: the state of the
                self._save()  # previous step already covers a kill; a venue's order needs its intent on disk first
            try:
                fill = self.retry.call(self.broker.market_order, plan.side, plan.qty, client_order_id=cid)
            except OrderRejectedError as err:
                self._rejections_in_row += 1
                if self._stats is not None:
                    self._stats.orders_rejected += 1
                logger.error("live/order: {} {:g} refused by the venue ({} in a row; the emergency runs at {}): {}",
                             plan.side, plan.qty, self._rejections_in_row, self.max_order_rejections, err)
                info = self._info(step, bar, obs, decision.action_raw, plan.target_frac, None, acct, t0,
                                  f"order {cid} {plan.side} {plan.qty:g} refused, skipped: {err}", time.perf_counter(),
                                  gap)
                return dataclasses.replace(info, event="order_rejected")
            self._rejections_in_row = 0
            if not fill.qty:
                fill = None
            acct = self._after_fill(acct, fill)
        return self._info(step, bar, obs, decision.action_raw, plan.target_frac, fill, acct, t0, plan.reason,
                          latency_t, gap)

    def _after_fill(self, acct: AccountState, fill: Fill | None) -> AccountState:
        if fill is None:
            return acct
        if self.broker.cheap_account:
            return self.broker.account()
        pos = acct.position_qty + fill.qty
        slip_cost = (fill.price_usd - acct.mark_price) * fill.qty if acct.mark_price else 0.0
        return AccountState(acct.balance_usd - fill.fee_usd, acct.equity_usd - fill.fee_usd - slip_cost, pos,
                            acct.entry_price if pos * acct.position_qty > 0 else fill.price_usd, acct.mark_price)

    def _info(self, step: int, bar: Bar, obs: np.ndarray | None, action_raw: float, target_frac: float,
              fill: Fill | None, acct: AccountState, t0: float, reason: str, t_decided: float,
              gap: bool = False) -> StepInfo:
        return StepInfo(step, bar, obs, action_raw, target_frac, fill, acct, self.risk.peak_equity_usd,
                        self.risk.drawdown_frac, (t_decided - t0) * 1e3, reason, gap_before=gap)

    # --- OrderJournal: closing orders of a flatten ----------------------------------------
    def order_intent(self, side: str, qty: float, purpose: str) -> str:
        """Record a closing order's intent (state file) before it is sent; return its client order id.

        Parameters
        ----------
        side : str
            ``"buy"`` or ``"sell"``.
        qty : float
            Quantity, base units; > 0.
        purpose : str
            ``"stop_flatten"`` or an emergency purpose; part of the client order id.
        """
        st = self.st
        assert st is not None
        cid = f"qnb-{st.order_tag}-{st.step}{'f' if purpose == 'stop_flatten' else 'e'}{len(st.pending_orders)}"
        st.pending_orders.append(PendingOrder(cid, side, qty, True, st.step, st.last_bar_ms or 0, purpose))
        self._save()
        return cid

    def order_filled(self, fill: Fill, purpose: str) -> None:
        """Write a closing fill to the registro (event ``purpose``) and the state.

        Parameters
        ----------
        fill : Fill
            The venue's fill.
        purpose : str
            The purpose given to :meth:`order_intent`; the registro row's event.
        """
        acct: AccountState | None
        try:
            acct = self.retry.call(self.broker.account) if self.broker.cheap_account or self._acct is None \
                else self._after_fill(self._acct, fill)
        except QuantnbError:
            acct = self._after_fill(self._acct, fill) if self._acct is not None else None
        self._write_fill_row(purpose, fill, acct)

    def order_failed(self, client_order_id: str) -> None:
        """Keep a failed closing order's intent: the venue is asked about it on restart.

        Parameters
        ----------
        client_order_id : str
            The id :meth:`order_intent` returned.
        """
        logger.warning("live/state: closing order {} failed; its intent stays recorded for the restart",
                       client_order_id)

    def _write_fill_row(self, event: str, fill: Fill, acct: AccountState | None) -> None:
        with self._save_lock:  # the stop guard saves from its thread: never between row and state
            st = self.st
            assert st is not None and self._registro is not None
            acct = acct or self._acct
            assert acct is not None
            bar = self._bar or Bar(st.last_bar_ms or 0, math.nan, math.nan, math.nan, st.last_close or math.nan, 0.0)
            if acct.equity_usd == acct.equity_usd:
                self.risk.update_equity(acct.equity_usd)
            info = StepInfo(st.step, bar, None, math.nan, math.nan, fill, acct, self.risk.peak_equity_usd,
                            self.risk.drawdown_frac, 0.0, "", event=event)
            self._registro.write(info.audit_row())
            self._count_fill(fill)
            logger.warning("live/fill {} {} qty={:g} price_usd={:.2f} fee_usd={:.4f} order={} ({})", event, fill.side,
                           abs(fill.qty), fill.price_usd, fill.fee_usd, fill.order_id, fill.client_order_id)
            st.pending_orders = [p for p in st.pending_orders if p.client_order_id != fill.client_order_id]
            st.step += 1
            self._acct = acct
            self._acct_estimated = event != "reconcile_fill" and not self.broker.cheap_account
            if self._stats is not None:
                self._stats.end_equity_usd = acct.equity_usd
            self._save()

    def _emergency(self, stats: SessionStats, cause: EmergencyCause, detail: str) -> None:
        peak = self.risk.peak_equity_usd
        equity = stats.end_equity_usd if not math.isnan(stats.end_equity_usd) else stats.start_equity_usd
        self.trading_state = TradingState.HALTED
        if self.st is not None:
            self.st.halt_cause = cause
            self._save()
        stats.emergency = self.emergency.run(cause, detail, peak_equity_usd=peak, equity_usd=equity)
        stats.emergencias_path = self.emergency.path
        stats.stopped_by = f"emergency:{cause}"

    def _safe(self, fn: Callable[[], int], default: int) -> int:
        try:
            return self.retry.call(fn)
        except QuantnbError as err:
            logger.error("live/session: {} failed during the orderly stop: {}", getattr(fn, "__name__", fn), err)
            return default
