"""Exception hierarchy of quantnb, named for what the caller should do.

Every exception the library raises derives from :class:`QuantnbError`, so
``except QuantnbError`` catches all of them. The branches tell the caller the
remedy, after freqtrade's exception design:

- :class:`ConfigError`: refuse to start; fix the parameters or the config file.
- :class:`DataError`: quarantine this input file and go on with the others.
- :class:`TemporaryError`: retry with backoff (a timeout, a 5xx, a dropped connection).
- :class:`RateLimitError`: a :class:`TemporaryError` that carries the wait the venue asked for.
- :class:`OperationalError`: halt trading, flatten positions, alert a person.
"""

from __future__ import annotations

__all__ = [
    "QuantnbError",
    "ConfigError",
    "DataError",
    "TemporaryError",
    "RateLimitError",
    "OperationalError",
    "OrderRejectedError",
    "RunInterrupted",
    "QuantnbWarning",
]


class QuantnbError(Exception):
    """Root of every error quantnb raises."""


class ConfigError(QuantnbError, ValueError):
    """Invalid parameters or configuration: refuse to start, nothing has run yet."""


class DataError(QuantnbError):
    """Bad input data: quarantine the file named in the message and go on with the others.

    Parameters
    ----------
    message : str
        What is wrong, naming the file, the line and the fix.
    path : str or None
        The input file, when known.
    line : int or None
        1-based line number in that file, when known.
    bar : str, int or None
        The bar at fault when the input is a frame or a stream of bars rather than a text
        file: its ``ts`` (ISO 8601 string or epoch milliseconds) or its 0-based row index.
    field : str or None
        The column or field at fault (e.g. ``"ts"``, ``"close"``), when known.

    Attributes
    ----------
    path, line, bar, field
        As given, so a caller can quarantine or report without parsing the message.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 bar: str | int | None = None, field: str | None = None):
        super().__init__(message)
        self.path = path
        self.line = line
        self.bar = bar
        self.field = field

    def __reduce__(self):  # keep the structured fields across process boundaries (ProcessPoolExecutor)
        return (_rebuild_data_error, (str(self), self.path, self.line, self.bar, self.field))


def _rebuild_data_error(message: str, path: str | None, line: int | None,
                        bar: str | int | None = None, field: str | None = None) -> DataError:
    return DataError(message, path=path, line=line, bar=bar, field=field)


class TemporaryError(QuantnbError):
    """A transient failure (timeout, 5xx, dropped connection): retry with backoff."""


class RateLimitError(TemporaryError):
    """The venue asked us to slow down (HTTP 429/418).

    Parameters
    ----------
    message : str
        What happened.
    retry_after_s : float or None
        Seconds the venue asked to wait (``Retry-After`` header), when given.
    """

    def __init__(self, message: str, *, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def __reduce__(self):
        return (_rebuild_rate_limit_error, (str(self), self.retry_after_s))


def _rebuild_rate_limit_error(message: str, retry_after_s: float | None) -> RateLimitError:
    return RateLimitError(message, retry_after_s=retry_after_s)


class OperationalError(QuantnbError):
    """A failure that makes trading unsafe: halt, flatten, alert."""


class OrderRejectedError(OperationalError):
    """The venue refused one order (e.g. Binance ``-2019 Margin is insufficient``): record it, skip, go on.

    Repeated rejections make trading unsafe: the trader then runs the emergency protocol.
    """


class RunInterrupted(QuantnbError):
    """The run was stopped by SIGINT or SIGTERM; its checkpoint is consistent."""


class QuantnbWarning(UserWarning):
    """Root of quantnb's warnings."""
