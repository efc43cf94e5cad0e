"""Checks on each candle before the trader acts on it: bad values are rejected, gaps detected."""

from __future__ import annotations

import datetime as dt
import math

from quantnb.errors import DataError
from quantnb.live._types import Bar

__all__ = ["BadBarError", "validate_bar", "bar_iso"]


def bar_iso(open_time_ms: int) -> str:
    """Return a candle's open time as ISO 8601 UTC (seconds).

    Parameters
    ----------
    open_time_ms : int
        Open time, milliseconds since the Unix epoch (UTC).
    """
    return dt.datetime.fromtimestamp(open_time_ms / 1000, dt.UTC).isoformat(timespec="seconds")


class BadBarError(DataError):
    """A candle the trader must not act on.

    Parameters
    ----------
    message : str
        What is wrong, naming the candle and the field.
    bar_ts : str
        The candle's open time, ISO 8601 UTC.
    field : str
        The offending field (``close``, ``high``, ...).
    """

    def __init__(self, message: str, *, bar_ts: str, field: str):
        super().__init__(message)
        self.bar_ts = bar_ts
        self.field = field

    def __reduce__(self):  # keep the fields across process boundaries
        return (_rebuild, (str(self), self.bar_ts, self.field))


def _rebuild(message: str, bar_ts: str, field: str) -> BadBarError:
    return BadBarError(message, bar_ts=bar_ts, field=field)


def validate_bar(bar: Bar) -> None:
    """Refuse a candle with a non-finite or non-positive price, a negative volume, or inconsistent OHLC.

    Parameters
    ----------
    bar : Bar
        The closed candle.

    Raises
    ------
    BadBarError
        Naming the candle's open time and the field: NaN/Inf in ``open``, ``high``, ``low``,
        ``close`` or ``volume``; a price <= 0; ``volume < 0``; ``high < low``; ``open`` or
        ``close`` outside ``[low, high]``.
    """
    ts = bar_iso(bar.open_time_ms)

    def bad(field: str, value: float, why: str) -> BadBarError:
        return BadBarError(f"bar {ts} field {field}={value!r}: {why}; the trader does not act on this bar "
                           f"(check the data source)", bar_ts=ts, field=field)

    for field in ("open", "high", "low", "close"):
        value = getattr(bar, field)
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise bad(field, value, "not a finite number")
        if value <= 0:
            raise bad(field, value, "price must be > 0")
    if not isinstance(bar.volume, int | float) or not math.isfinite(bar.volume):
        raise bad("volume", bar.volume, "not a finite number")
    if bar.volume < 0:
        raise bad("volume", bar.volume, "volume must be >= 0")
    if bar.high < bar.low:
        raise bad("high", bar.high, f"high below low={bar.low!r}")
    for field in ("open", "close"):
        value = getattr(bar, field)
        if not bar.low <= value <= bar.high:
            raise bad(field, value, f"outside [low={bar.low!r}, high={bar.high!r}]")
