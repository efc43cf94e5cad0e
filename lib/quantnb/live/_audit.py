"""Append-only CSV audit files: ``registro_<ts>.csv`` (one row per closed bar), ``emergencias_<ts>.csv``."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import math
import os
from pathlib import Path
from typing import Any, TextIO

from quantnb._secrets import SecretMasker

__all__ = ["REGISTRO_COLUMNS", "EMERGENCIAS_COLUMNS", "AuditRow", "CsvAppender", "session_timestamp",
           "unique_session_ts"]

REGISTRO_COLUMNS = (
    "timestamp", "step", "bar_ts", "close", "action_raw", "target_frac", "side", "qty", "fill_price", "fee_usd",
    "position", "balance_usd", "equity_usd", "peak_equity_usd", "drawdown_frac", "decision_latency_ms",
    "event", "client_order_id", "gap_before", "note", "funding_usd",
)
EMERGENCIAS_COLUMNS = (
    "timestamp", "cause", "detail", "peak_equity_usd", "equity_usd", "drawdown_frac", "orders_cancelled",
    "positions_closed", "confirmations", "flat_confirmed",
)


def session_timestamp() -> str:
    """Return the current UTC time as ``YYYYMMDD_HHMMSS``, the suffix of a session's files."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d_%H%M%S")


def unique_session_ts(out_dir: Path) -> str:
    """Return a session timestamp whose CSV files do not exist yet in ``out_dir`` (``-2``, ``-3`` on clashes)."""
    base = ts = session_timestamp()
    n = 1
    while (out_dir / f"registro_{ts}.csv").exists() or (out_dir / f"emergencias_{ts}.csv").exists():
        n += 1
        ts = f"{base}-{n}"
    return ts


@dataclasses.dataclass(slots=True)
class AuditRow:
    """One ``registro`` row: the decision and its outcome for one closed bar."""

    timestamp: str  # wall-clock UTC time the row was written, ISO 8601
    step: int  # 0-based bar index of the session
    bar_ts: str  # the candle's open time, ISO 8601 UTC
    close: float  # USDT
    action_raw: float  # the policy's output, in [-1, 1]
    target_frac: float  # target position over equity after interpretation and risk clipping
    side: str  # "buy", "sell" or "" (no order)
    qty: float  # filled base quantity; 0 without order
    fill_price: float  # average price, USDT; nan without order
    fee_usd: float  # commission, USDT
    position: float  # signed, base units, after the step
    balance_usd: float  # wallet balance after the step, USDT
    equity_usd: float
    peak_equity_usd: float  # the session's peak equity
    drawdown_frac: float  # 1 - equity / peak
    decision_latency_ms: float  # closed candle's arrival -> order handed to the broker (or no-order decision)
    # bar | rejected (bad candle, not acted on) | order_rejected (skipped, reason in note) | stop_flatten |
    # emergency_close | reconcile_fill (an in-flight order a restart found filled)
    event: str = "bar"
    client_order_id: str = ""  # our id of the order
    gap_before: int = 0  # 1 when candles are missing before this one (the features warm up again)
    note: str = ""  # why no order was sent, or the rejection reason
    # funding paid at this bar's settlements, USDT (< 0: received); empty where the venue books it (testnet, live)
    funding_usd: float = 0.0


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


class CsvAppender:
    """A CSV file opened for line-buffered appends: each row reaches the OS as it is written.

    A file left by a killed run is appended to (readers tolerate a truncated last line). Values of
    secret environment variables (names with KEY, SECRET, TOKEN or PASSWORD, 4+ characters; read
    when the file is opened) are written as ``***``.
    """

    def __init__(self, path: Path, columns: tuple[str, ...]):
        self.path = Path(path)
        self.columns = columns
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._fh: TextIO = open(self.path, "a", buffering=1, newline="", encoding="utf-8")  # noqa: SIM115
        self._writer = csv.writer(self._fh, lineterminator="\n")
        self._mask = SecretMasker()
        self.rows = 0
        if new:
            self._writer.writerow(columns)

    def write(self, row: AuditRow | dict[str, Any]) -> None:
        """Append one row (an :class:`AuditRow` or a dict keyed by column), secrets masked, and flush it."""
        if isinstance(row, AuditRow):
            values = [getattr(row, c) for c in self.columns]
        else:
            values = [row.get(c, "") for c in self.columns]
        if self._mask:
            mask = self._mask
            self._writer.writerow([mask(v) if isinstance(v, str) else _fmt(v) for v in values])
        else:
            self._writer.writerow([_fmt(v) for v in values])
        self.rows += 1

    def tell(self) -> int:
        """Return the file's size in bytes after the rows written so far."""
        self._fh.flush()
        return os.fstat(self._fh.fileno()).st_size

    def close(self) -> None:
        """Close the file."""
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> CsvAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
