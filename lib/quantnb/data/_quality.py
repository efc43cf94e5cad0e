"""Per-file data-quality report: every defect counted, the first ones of each kind logged with file and line."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from loguru import logger

from quantnb.errors import ConfigError

# How many findings of one kind are logged one by one; the rest are counted and summarised.
LOG_LIMIT_PER_KIND = 20
# How many findings are kept as examples in the report.
EXAMPLES_LIMIT = 50

COUNTERS = (
    "nan_inf",
    "non_positive_price",
    "negative_size",
    "crossed",
    "locked",
    "seq_gaps",
    "resyncs",
    "skipped_unsynced",
    "skipped_before_snapshot",
    "stale_dropped",
    "buffer_dropped",
    "duplicates",
    "conflicting_duplicates",
    "out_of_order",
    "time_gaps",
    "unsynced_minutes",
    "unsupported_messages",
    "blank_lines",
    "ohlc_inconsistent",
    "zero_volume",
    "unaligned_ts",
    "symbol_mismatch",
    "top_repairs",
)


@dataclasses.dataclass
class QualityReport:
    """Counts of what one input file contained and every defect found in it.

    Every defect is counted here and logged at WARNING with file and line (the first
    ``LOG_LIMIT_PER_KIND`` of each kind one by one, the rest in one summary line), so
    nothing is dropped silently. Fatal corruption is not counted: it raises
    :class:`~quantnb.errors.DataError` instead. Each field's comment says what it counts;
    :mod:`quantnb.data._bar_rules` owns every bar rule and the counter each is counted under.
    """

    path: str  # the input file
    source: str  # source kind: bybit_book, binance_usdm, ohlcv_csv or trades_csv
    venue: str = ""  # bybit, binance, the ETL's ohlcv_venue; empty until the ingestion sets it
    market: str = ""  # linear, spot, usdm...; empty until the ingestion sets it
    symbols: list[str] = dataclasses.field(default_factory=list)  # symbols found in the file
    lines: int = 0  # lines read
    messages: int = 0  # messages (or CSV rows) parsed
    snapshots: int = 0  # book snapshots applied
    book_updates: int = 0  # book messages applied (snapshots and deltas)
    trades: int = 0
    bbo_updates: int = 0  # best-bid/offer (bookTicker) messages
    bars: int = 0  # partial 1-minute bar rows produced
    no_data_rows: bool = False  # no data row (a header-only CSV, a capture without trade or synced book): no bar
    first_ts: str | None = None  # first exchange timestamp seen (ISO 8601, UTC)
    last_ts: str | None = None  # last one
    nan_inf: int = 0  # NaN or infinite sizes or volumes (NaN/Inf *prices* are fatal)
    non_positive_price: int = 0  # levels, trades or rows with a price <= 0 (skipped)
    negative_size: int = 0  # ... with a size < 0 (skipped)
    crossed: int = 0  # book states with best bid > best ask
    locked: int = 0  # book states with best bid == best ask
    seq_gaps: int = 0  # breaks of the update-id sequence (Bybit u not +1; Binance pu != previous u)
    resyncs: int = 0  # book rebuilds from a later snapshot (after a gap, or a snapshot mid-stream)
    skipped_unsynced: int = 0  # book deltas skipped while waiting for a snapshot after a gap
    skipped_before_snapshot: int = 0  # Bybit deltas skipped before the first snapshot (skip_until_snapshot)
    stale_dropped: int = 0  # Binance diffs dropped by the sync rule u < lastUpdateId (normal, not a defect)
    buffer_dropped: int = 0  # Binance diffs dropped because the pre-snapshot buffer was full
    duplicates: int = 0  # repeated timestamps / update ids / trade ids
    conflicting_duplicates: int = 0  # duplicates (counted in duplicates too) whose values differ from the row kept
    out_of_order: int = 0  # decreasing timestamps / update ids / trade ids
    time_gaps: int = 0  # jumps of 2 minutes or more between consecutive events or bars
    unsynced_minutes: int = 0  # minutes with book messages but no synced book at the close (no book features)
    unsupported_messages: int = 0  # messages of a kind the reader does not use (e.g. aggTrade), skipped
    blank_lines: int = 0  # empty lines, skipped
    ohlc_inconsistent: int = 0  # bars whose high/low do not bracket open and close (rejected)
    zero_volume: int = 0  # bars with volume 0 while the price moved (kept)
    unaligned_ts: int = 0  # bar timestamps not on a minute boundary (floored to the minute)
    symbol_mismatch: int = 0  # messages whose symbol differs from the file's first symbol (skipped)
    top_repairs: int = 0  # minute closes where the kept best bid/ask disagreed with a full scan (repaired; expect 0)
    examples: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # first findings: {kind, line, message}
    # the first conflicting duplicates: {line, key, kept_line, kept, dropped} (key: timestamp or trade id; the
    # values of the row kept, the first in the file, and of the row dropped)
    duplicate_conflicts: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def flag(self, kind: str, line: int | None, message: str, count: int = 1) -> None:
        """Count ``count`` findings of ``kind`` at ``line`` and log the first ones at WARNING.

        Parameters
        ----------
        kind : str
            One of the counter attributes (e.g. ``"seq_gaps"``).
        line : int or None
            1-based line in the file (for CSV files: the line of the row, header is line 1).
        message : str
            What was found and what was done about it.
        count : int
            How many findings this call stands for (a CSV check reports all rows at once).

        Raises
        ------
        ConfigError
            If ``kind`` is not one of :data:`COUNTERS` (a programming error in the caller).
        """
        if kind not in COUNTERS:
            raise ConfigError(f"{self.path}: unknown quality counter {kind!r} (line {line}); "
                              f"pass one of: {', '.join(COUNTERS)}")
        before = getattr(self, kind)
        setattr(self, kind, before + count)
        if before < LOG_LIMIT_PER_KIND:
            where = f"{self.path} line {line}" if line is not None else self.path
            logger.warning("{}: {} [{}]", where, message, kind)
            if len(self.examples) < EXAMPLES_LIMIT:
                self.examples.append({"kind": kind, "line": line, "message": message})

    def conflict(self, line: int | None, key: Any, kept_line: int | None, kept: dict[str, Any],
                 dropped: dict[str, Any]) -> None:
        """Count a duplicate whose values differ from the row kept; keep both values as an example.

        Parameters
        ----------
        line, kept_line : int or None
            File lines of the dropped and of the kept row.
        key : Any
            The duplicated timestamp or id.
        kept, dropped : dict
            Field values of the row kept and of the row dropped.
        """
        msg = (f"duplicate {key} with other values: kept line {kept_line} {kept}, dropped line {line} {dropped}")
        self.flag("conflicting_duplicates", line, msg)
        if len(self.duplicate_conflicts) < EXAMPLES_LIMIT:
            self.duplicate_conflicts.append({"line": line, "key": str(key), "kept_line": kept_line,
                                             "kept": kept, "dropped": dropped})

    def finish(self) -> None:
        """Log one summary WARNING per kind whose findings were not all logged one by one."""
        for kind in COUNTERS:
            n = getattr(self, kind)
            if n > LOG_LIMIT_PER_KIND:
                logger.warning("{}: {} more {!r} finding(s) not logged one by one (all {} counted)",
                               self.path, n - LOG_LIMIT_PER_KIND, kind, n)

    @property
    def defects(self) -> dict[str, int]:
        """Return the non-zero defect counters (``stale_dropped`` excluded: it is normal syncing)."""
        return {k: getattr(self, k) for k in COUNTERS if getattr(self, k) and k != "stale_dropped"}

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Return the report as an indented JSON string."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)
