"""Continue a recorded session: load the state, cut the registro back, reconcile with the venue, record differences."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path

from loguru import logger

from quantnb.agent import Fill
from quantnb.live._audit import CsvAppender
from quantnb.live._broker import Broker
from quantnb.live._state import StateStore, TraderState, TradingState
from quantnb.live._types import AccountState
from quantnb.retry import RetryPolicy

__all__ = ["RECONCILIATION_COLUMNS", "Reconciliation", "load_recorded_state", "cut_registro", "reconcile"]

RECONCILIATION_COLUMNS = ("timestamp", "item", "recorded", "venue", "action")


def load_recorded_state(store: StateStore, *, fresh_start: bool) -> TraderState | None:
    """Return the state a new session continues, or None for a new session (logged at WARNING)."""
    if fresh_start:
        logger.warning("live/state: fresh_start=True: any recorded account and peak equity of {} are set aside; "
                       "the drawdown guard starts from the current equity", store.path)
        store.archive("fresh start")
        return None
    rec = store.load()
    if rec is None:
        return None
    if rec.completed:
        logger.warning("live/state: the recorded {} session {} reached the end of its data; a new session starts",
                       rec.mode, rec.session_ts)
        store.archive("previous session completed")
        return None
    return rec


def cut_registro(path: Path, size_bytes: int) -> int:
    """Cut ``path`` back to ``size_bytes`` (rows written after the last recorded step); return bytes removed."""
    if not path.exists():
        return 0
    extra = path.stat().st_size - size_bytes
    if extra > 0:
        with open(path, "rb+") as fh:
            fh.truncate(size_bytes)
            fh.flush()
            os.fsync(fh.fileno())
        logger.warning("live/state: {}: {} bytes after the last recorded step removed (that step is redone)",
                       path, extra)
    return max(extra, 0)


@dataclasses.dataclass
class Reconciliation:
    """What a resumed session found: resolved orders and the venue's account."""

    fills: list[tuple[str, Fill]]
    account: AccountState
    differences: int
    path: Path


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def reconcile(rec: TraderState, broker: Broker, retry: RetryPolicy, path: Path, *, paper: bool) -> Reconciliation:
    """Compare the recorded state with the venue, resolve in-flight orders, record every difference.

    For a paper account the recorded state is the truth: an in-flight paper order died with
    the process (the recorded account predates it; its candle is processed again). For a
    venue: each in-flight client order id is looked up (filled, open or missing); resting
    orders are cancelled (the trader only sends market orders); position and balance are
    compared with the recorded ones.
    """
    fills: list[tuple[str, Fill]] = []
    n = 0
    with CsvAppender(path, RECONCILIATION_COLUMNS) as out:
        acct0 = rec.account
        out.write({"timestamp": _now(), "item": "resume",
                   "recorded": f"step={rec.step} last_bar_ms={rec.last_bar_ms} state={rec.trading_state.value} "
                               f"peak_equity_usd={rec.peak_equity_usd!r} equity_usd={acct0.get('equity_usd')!r} "
                               f"position={acct0.get('position_qty')!r} restarts={rec.restarts}",
                   "venue": "", "action": "continue with the recorded peak equity"})
        if rec.trading_state is TradingState.HALTED:
            logger.warning("live/state: the recorded session was halted ({}); the halt marker is absent, so it "
                           "resumes with the recorded peak equity {:.2f} (fresh_start=True resets it)",
                           rec.halt_cause or "emergency", rec.peak_equity_usd)
        for p in rec.pending_orders:
            n += 1
            if paper:
                logger.warning("live/state: paper order {} ({} {} {:g}) was in flight when the session stopped; the "
                               "recorded account predates it and its candle is processed again", p.client_order_id,
                               p.purpose, p.side, p.qty)
                out.write({"timestamp": _now(), "item": f"order {p.client_order_id}",
                           "recorded": f"in flight {p.purpose} {p.side} {p.qty!r}", "venue": "paper: not kept",
                           "action": "candle processed again"})
                continue
            status, fill = retry.call(broker.order_status, p.client_order_id)
            logger.warning("live/state: in-flight order {} ({} {} {:g}) is {} on the venue", p.client_order_id,
                           p.purpose, p.side, p.qty, status)
            action = {"filled": "fill recorded in the registro", "open": "cancelled",
                      "missing": "never executed; nothing to record"}[status]
            out.write({"timestamp": _now(), "item": f"order {p.client_order_id}",
                       "recorded": f"in flight {p.purpose} {p.side} {p.qty!r}",
                       "venue": status if fill is None
                       else f"filled {fill.side} {abs(fill.qty)!r} @ {fill.price_usd!r}",
                       "action": action})
            if fill is not None:
                fills.append((p.purpose, fill))
        account = retry.call(broker.account)
        if not paper:
            open_ids = retry.call(broker.open_orders)
            if open_ids:
                n += 1
                cancelled = retry.call(broker.cancel_all)
                logger.warning("live/state: {} order(s) resting on the venue ({}); cancelled", cancelled, open_ids)
                out.write({"timestamp": _now(), "item": "open orders", "recorded": "none",
                           "venue": " ".join(open_ids), "action": f"cancelled {cancelled}"})
            expected_pos = float(acct0.get("position_qty", 0.0)) + sum(f.qty for _, f in fills)
            if abs(account.position_qty - expected_pos) > 1e-9:
                n += 1
                logger.warning("live/state: position differs: recorded {:g} (with resolved fills), venue {:g}; "
                               "trading continues from the venue's position", expected_pos, account.position_qty)
                out.write({"timestamp": _now(), "item": "position", "recorded": repr(expected_pos),
                           "venue": repr(account.position_qty), "action": "use the venue's position"})
            recorded_bal = acct0.get("balance_usd")
            tolerance_usd = 0.01 + sum(abs(f.qty * f.price_usd) * 0.01 + f.fee_usd for _, f in fills)
            if acct0.get("balance_estimated"):  # the last step's fill: realized PnL was not read back
                tolerance_usd += 0.01 * abs(float(acct0.get("equity_usd") or 0.0))
            if recorded_bal is not None and abs(account.balance_usd - recorded_bal) > tolerance_usd:
                n += 1
                logger.warning("live/state: balance differs: recorded {:.2f} USD, venue {:.2f} USD; trading continues "
                               "from the venue's balance", recorded_bal, account.balance_usd)
                out.write({"timestamp": _now(), "item": "balance_usd", "recorded": repr(recorded_bal),
                           "venue": repr(account.balance_usd), "action": "use the venue's balance"})
    return Reconciliation(fills, account, n, path)
