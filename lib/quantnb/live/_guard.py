"""The trader's guard: each candle judged by the ETL's bar rules (:mod:`quantnb.data._bar_rules`) before it is used."""

from __future__ import annotations

from loguru import logger

from quantnb.data import BarFinding, Verdict, bar_iso, check_bar
from quantnb.errors import DataError
from quantnb.live._types import Bar

__all__ = ["BadBarError", "validate_bar", "bar_iso"]


class BadBarError(DataError):
    """A candle the trader must not act on (a bar rule with the ``reject`` verdict).

    Parameters
    ----------
    message : str
        What is wrong, naming the candle and the field.
    bar_ts : str
        The candle's open time, ISO 8601 UTC.
    field : str
        The offending field (``close``, ``high``, ``ts``...).
    rule : str
        The broken rule's name (:data:`quantnb.data._bar_rules.BAR_RULES`).
    """

    def __init__(self, message: str, *, bar_ts: str, field: str, rule: str = ""):
        super().__init__(message, bar=bar_ts, field=field)
        self.bar_ts = bar_ts
        self.rule = rule

    def __reduce__(self):  # keep the fields across process boundaries
        return (_rebuild, (str(self), self.bar_ts, self.field, self.rule))


def _rebuild(message: str, bar_ts: str, field: str, rule: str = "") -> BadBarError:
    return BadBarError(message, bar_ts=bar_ts, field=field, rule=rule)


def validate_bar(bar: Bar, *, prev_ms: int | None = None, interval_ms: int = 60_000) -> list[BarFinding]:
    """Judge a candle by the ETL's bar rules; raise BadBarError on a reject verdict, log and return the flags."""
    findings = check_bar(bar.open_time_ms, bar.open, bar.high, bar.low, bar.close, bar.volume, prev_ms=prev_ms,
                         interval_ms=interval_ms)
    if findings and findings[0].rule.verdict is Verdict.REJECT:
        f = findings[0]
        raise BadBarError(f"{f.message}; the trader does not act on this bar", bar_ts=bar_iso(f.ts_ms),
                          field=f.field, rule=f.rule.name)
    for f in findings:
        if f.rule.name != "gap":
            logger.warning("live/feed: {}", f.message)
    return findings
