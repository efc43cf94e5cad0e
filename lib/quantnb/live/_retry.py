"""The one retry decorator of the live trader: retries TemporaryError and nothing else."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from loguru import logger

from quantnb.errors import ConfigError, RateLimitError, TemporaryError

__all__ = ["RetryPolicy", "retry_temporary"]

P = ParamSpec("P")
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How a temporary failure is retried.

    Parameters
    ----------
    max_retries : int
        Retries after the first attempt (3: up to four attempts in all).
    delay_s : float
        Wait between attempts, seconds, unless the venue asked for longer.
    max_delay_s : float
        Cap on a venue's ``Retry-After``, seconds; a longer ban is not waited out
        (the error is re-raised at once so the emergency protocol runs).
    sleep : callable
        Sleep function, injectable so tests are fast.

    Raises
    ------
    ConfigError
        If a number is negative.
    """

    max_retries: int = 3
    delay_s: float = 1.0
    max_delay_s: float = 60.0
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.delay_s < 0 or self.max_delay_s < 0:
            raise ConfigError(f"RetryPolicy: max_retries, delay_s and max_delay_s must be >= 0, got "
                              f"{self.max_retries}, {self.delay_s}, {self.max_delay_s}")

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn``, retrying on :class:`TemporaryError`; re-raise the last one when exhausted.

        A :class:`RateLimitError` waits ``max(delay_s, retry_after_s)``.

        Raises
        ------
        TemporaryError
            The last failure, after ``max_retries`` retries (or a ban longer than
            ``max_delay_s``).
        QuantnbError
            Any other error from ``fn``, at once.
        """
        name = getattr(fn, "__qualname__", repr(fn))
        for attempt in range(self.max_retries + 1):
            try:
                return fn(*args, **kwargs)
            except TemporaryError as err:
                wait_s = self.delay_s
                if isinstance(err, RateLimitError) and err.retry_after_s is not None:
                    wait_s = max(wait_s, err.retry_after_s)
                if attempt == self.max_retries or wait_s > self.max_delay_s:
                    logger.error("live/retry: {} failed after {} attempt(s): {}", name, attempt + 1, err)
                    raise
                logger.warning("live/retry: {} attempt {}/{} failed ({}); retrying in {:.3f} s",
                               name, attempt + 1, self.max_retries + 1, err, wait_s)
                self.sleep(wait_s)
        raise AssertionError("unreachable")  # pragma: no cover


def retry_temporary(policy: RetryPolicy | None = None) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorate a function so a :class:`TemporaryError` is retried under ``policy``.

    Parameters
    ----------
    policy : RetryPolicy, optional
        Defaults to 3 retries 1 s apart.

    Returns
    -------
    callable
        The decorator.
    """
    pol = policy or RetryPolicy()

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return pol.call(fn, *args, **kwargs)

        return wrapper

    return decorate
