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
    """Return a session timestamp whose CSV files do not exist yet in ``out_dir`` (``-2``, ``-3`` on clashes).

    Parameters
    ----------
    out_dir : pathlib.Path
        The production folder.
    """
    base = ts = session_timestamp()
    n = 1
    while (out_dir / f"registro_{ts}.csv").exists() or (out_dir / f"emergencias_{ts}.csv").exists():
        n += 1
        ts = f"{base}-{n}"
    return ts


@dataclasses.dataclass(slots=True)
class AuditRow:
    """One ``registro`` row: the decision and its outcome for one closed bar.

    Attributes
    ----------
    timestamp : str
        Wall-clock UTC time the row was written, ISO 8601.
    step : int
        0-based bar index of the session.
    bar_ts : str
        The candle's open time, ISO 8601 UTC.
    close : float
        The candle's close, USDT.
    action_raw : float
        The policy's output, in [-1, 1].
    target_frac : float
        Target position over equity after interpretation and risk clipping.
    side : str
        ``buy``, ``sell`` or ``""`` (no order).
    qty, fill_price, fee_usd : float
        Filled base quantity, average price (USDT) and commission (USDT); 0, nan, 0 without order.
    funding_usd : float
        Funding paid at the settlements booked on this bar, USDT (< 0: received); empty where the
        venue books it (testnet, live: read the venue's income history).
    position : float
        Signed position after the step, base units.
    balance_usd, equity_usd, peak_equity_usd : float
        Wallet balance, equity and session peak equity after the step, USDT.
    drawdown_frac : float
        ``1 - equity / peak``.
    decision_latency_ms : float
        From the closed candle's arrival to the order being handed to the broker (or to
        the no-order decision), milliseconds.
    event : str
        ``bar`` (a decision on a closed candle), ``rejected`` (a bad candle, not acted on),
        ``order_rejected`` (the venue refused the bar's order; skipped, reason in ``note``),
        ``stop_flatten`` (closing fill of an orderly stop), ``emergency_close`` (closing fill
        of the emergency protocol) or ``reconcile_fill`` (an in-flight order a restart found filled).
    client_order_id : str
        Our id of the order, ``""`` without one.
    gap_before : int
        1 when candles are missing before this one (the features warm up again), else 0.
    note : str
        Why no order was sent, or the rejection reason.
    """

    timestamp: str
    step: int
    bar_ts: str
    close: float
    action_raw: float
    target_frac: float
    side: str
    qty: float
    fill_price: float
    fee_usd: float
    position: float
    balance_usd: float
    equity_usd: float
    peak_equity_usd: float
    drawdown_frac: float
    decision_latency_ms: float
    event: str = "bar"
    client_order_id: str = ""
    gap_before: int = 0
    note: str = ""
    funding_usd: float = 0.0


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


class CsvAppender:
    """A CSV file opened for line-buffered appends: each row reaches the OS as it is written.

    The header is written when the file is new or empty; a file left by a killed run is
    appended to (readers tolerate a truncated last line). Values of secret environment
    variables (names with KEY, SECRET, TOKEN or PASSWORD, 4+ characters; read when the file
    is opened) are written as ``***`` (only text fields can carry one; numbers cost nothing).

    Parameters
    ----------
    path : pathlib.Path
        The CSV file; its folder is created.
    columns : tuple of str
        Column names, in order.
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
        """Append one row (an :class:`AuditRow` or a dict keyed by column), secrets masked, and flush it.

        Parameters
        ----------
        row : AuditRow or dict of str to Any
            The row; a dict may omit columns (written empty) and its unknown keys are ignored.
        """
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
