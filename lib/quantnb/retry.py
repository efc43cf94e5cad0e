"""The one retry policy of quantnb: retry :class:`~quantnb.errors.TemporaryError` only, with backoff and jitter.

Every caller that retries (the live broker and feed, the trading session) goes through
:class:`RetryPolicy`, built on `stamina <https://stamina.hynek.me>`_ (tenacity underneath):

- foreign errors are translated once, at the boundary, into quantnb's classes
  (:func:`translate_error`; ccxt's in :func:`quantnb.live.translate_ccxt_error`): what a retry
  may cure becomes :class:`~quantnb.errors.TemporaryError`, a venue asking us to slow down
  :class:`~quantnb.errors.RateLimitError` with ``retry_after_s`` (from ``Retry-After``,
  :func:`retry_after_s_from_headers`);
- only :class:`~quantnb.errors.TemporaryError` (and so :class:`~quantnb.errors.RateLimitError`)
  is retried, anything else propagates at once;
- the wait before retry ``n`` (1-based) is ``min(wait_max_s, wait_initial_s * wait_exp_base**(n-1)
  + uniform(0, wait_jitter_s))``, or the venue's ``Retry-After`` when it asks for longer; a ban
  longer than ``max_retry_after_s`` is not waited out (the error propagates so the caller can
  run its emergency protocol);
- ``attempts`` and ``timeout_s`` bound the whole call; every retry is logged at WARNING, the
  final failure at ERROR.

Tests make the waits zero with ``stamina.set_testing(True, attempts=100, cap=True)`` (the
logged waits are still computed), as stamina documents.

Example
-------
>>> from quantnb.retry import RetryPolicy
>>> policy = RetryPolicy(attempts=5, wait_initial_s=0.5, wait_max_s=8.0)
>>> policy.call(fetch_klines, "BTCUSDT")             # doctest: +SKIP
>>> @policy.decorate                                 # doctest: +SKIP
... def account(): ...
"""

from __future__ import annotations

import dataclasses
import email.utils
import functools
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, ParamSpec, TypeVar

import stamina
from loguru import logger

from quantnb.errors import ConfigError, QuantnbError, RateLimitError, TemporaryError

__all__ = ["RetryPolicy", "retry_temporary", "translate_error", "retry_after_s_from_headers"]

P = ParamSpec("P")
T = TypeVar("T")

_stamina_quiet = False


def _first_wait(hook: Callable[[Exception], float | bool], err: TemporaryError) -> float:
    """Return the wait after a call's first failure (0 under ``stamina`` test mode); re-raise ``err`` if none."""
    wait = hook(err)
    if wait is False:
        raise err
    _quiet_stamina_logging()
    return 0.0 if stamina.is_testing() else float(wait)


def _quiet_stamina_logging() -> None:
    """Drop stamina's own retry logging (each retry is logged once, by :meth:`RetryPolicy.call`)."""
    global _stamina_quiet
    if _stamina_quiet:
        return
    hooks: list[Any] = []
    try:
        import prometheus_client  # noqa: F401

        hooks.append(stamina.instrumentation.PrometheusOnRetryHook)
    except ImportError:
        pass
    stamina.instrumentation.set_on_retry_hooks(hooks)
    _stamina_quiet = True


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How a temporary failure is retried (exponential backoff with jitter, ``Retry-After`` honoured).

    Parameters
    ----------
    attempts : int or None
        Attempts in all, the first included (4: up to three retries); >= 1. None: until the
        call succeeds or its task is cancelled (a reconnect loop); set ``timeout_s`` None too.
    timeout_s : float or None
        Give up when the next wait would end later than this many seconds after the first
        attempt; None = no time limit.
    wait_initial_s : float
        Wait before the first retry, seconds (before jitter).
    wait_max_s : float
        Cap on a computed wait, seconds (the venue's ``Retry-After`` may exceed it up to
        ``max_retry_after_s``).
    wait_jitter_s : float
        Uniform random jitter added to each computed wait, seconds (0 = none); unused with
        ``jitter="full"``.
    wait_exp_base : float
        Growth factor of the wait per retry, >= 1.
    max_retry_after_s : float
        Longest ``Retry-After`` waited out, seconds; a longer ban (Binance 418) is re-raised at once.
    what : str
        Log prefix, e.g. ``live/retry``.
    jitter : {"added", "full"}
        ``added``: the formula above. ``full``: a wait drawn uniformly from
        ``[0, min(wait_max_s, wait_initial_s * wait_exp_base**(n-1))]`` (M. Brooker, "Exponential
        Backoff And Jitter", AWS Architecture Blog, 2015), for many clients reconnecting at once.
    quiet_after : int or None
        Log each failure of a call up to this many, then only every 20th (at ERROR); None: each.
    rng : random.Random or None
        Jitter source (the ``random`` module's by default); a seeded one makes the waits reproducible.

    Raises
    ------
    ConfigError
        If a number is out of range.
    """

    attempts: int | None = 4
    timeout_s: float | None = 120.0
    wait_initial_s: float = 0.5
    wait_max_s: float = 10.0
    wait_jitter_s: float = 0.5
    wait_exp_base: float = 2.0
    max_retry_after_s: float = 60.0
    what: str = "retry"
    jitter: Literal["added", "full"] = "added"
    quiet_after: int | None = None
    rng: random.Random | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.attempts is not None and self.attempts < 1:
            raise ConfigError(f"RetryPolicy attempts={self.attempts}: must be >= 1 (1 = no retry)")
        for name in ("wait_initial_s", "wait_max_s", "wait_jitter_s", "max_retry_after_s"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"RetryPolicy {name}={getattr(self, name)}: must be >= 0 seconds")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ConfigError(f"RetryPolicy timeout_s={self.timeout_s}: must be > 0 seconds or None")
        if not self.wait_exp_base >= 1:
            raise ConfigError(f"RetryPolicy wait_exp_base={self.wait_exp_base}: must be >= 1")

    def wait_s(self, err: BaseException, retry_num: int, rng: random.Random | None = None) -> float | None:
        """Return the wait before retry ``retry_num`` after ``err``, or None when it must not be retried.

        Parameters
        ----------
        err : BaseException
            The failure of the last attempt.
        retry_num : int
            1-based number of the retry about to happen.
        rng : random.Random, optional
            Jitter source (default: the policy's ``rng``, else the ``random`` module).

        Returns
        -------
        float or None
            Seconds; None if ``err`` is not a :class:`TemporaryError` or the venue asked for
            longer than ``max_retry_after_s``.
        """
        if not isinstance(err, TemporaryError):
            return None
        draw = (rng or self.rng or random).uniform
        try:
            grown = self.wait_initial_s * self.wait_exp_base ** (retry_num - 1)
        except OverflowError:
            grown = math.inf
        if self.jitter == "full":
            wait = draw(0.0, min(self.wait_max_s, grown))
        else:
            wait = min(self.wait_max_s, grown + (draw(0.0, self.wait_jitter_s) if self.wait_jitter_s else 0.0))
        if isinstance(err, RateLimitError) and err.retry_after_s is not None:
            if err.retry_after_s > self.max_retry_after_s:
                return None
            wait = max(wait, float(err.retry_after_s))
        return wait

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn``; retry it on :class:`TemporaryError` under this policy.

        Parameters
        ----------
        fn : callable
            The call to make.
        *args, **kwargs
            Passed to ``fn`` on every attempt.

        Raises
        ------
        TemporaryError
            The last failure, once ``attempts`` or ``timeout_s`` is spent, or at once for a
            ban longer than ``max_retry_after_s``.
        Exception
            Any other error of ``fn``, at once (never retried).
        """
        hook = self._hook(getattr(fn, "__qualname__", None) or repr(fn))
        try:  # fast path: a call that succeeds costs no retry machinery (the trader calls this every bar)
            return fn(*args, **kwargs)
        except TemporaryError as err:
            wait = _first_wait(hook, err)
        if wait:
            time.sleep(wait)
        for attempt in stamina.retry_context(on=hook, attempts=self._retries(), timeout=None):
            with attempt:
                return fn(*args, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover - stamina re-raises the last error

    def _retries(self) -> int | None:
        return None if self.attempts is None else self.attempts - 1

    def _hook(self, name: str) -> Callable[[Exception], bool | float]:
        """Return stamina's ``on`` hook for one call: the wait before the next retry, or False to stop."""
        t0 = time.monotonic()
        failures = 0

        def hook(exc: Exception) -> bool | float:
            nonlocal failures
            failures += 1
            if not isinstance(exc, TemporaryError):
                return False
            wait = self.wait_s(exc, failures)
            late = self.timeout_s is not None and wait is not None and \
                time.monotonic() - t0 + wait > self.timeout_s
            if wait is None or (self.attempts is not None and failures >= self.attempts) or late:
                why = ("the venue asks to wait longer than max_retry_after_s" if wait is None
                       else "timeout_s reached" if late else "attempts spent")
                logger.error("{}: {} failed after {} attempt(s) ({}): {}", self.what, name, failures, why, exc)
                return False
            of = f"/{self.attempts}" if self.attempts is not None else ""
            if self.quiet_after is None or failures < self.quiet_after:
                logger.warning("{}: {} attempt {}{} failed ({}: {}); retrying in {:.3f} s", self.what, name,
                               failures, of, type(exc).__name__, exc, wait)
            elif failures == self.quiet_after or failures % 20 == 0:
                logger.error("{}: {} attempt {}{} failed ({}: {}); retrying in {:.3f} s (from now on every 20th "
                             "failure is logged)", self.what, name, failures, of, type(exc).__name__, exc, wait)
            return wait

        return hook

    async def acall(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Await ``fn(*args, **kwargs)``; retry it on :class:`TemporaryError` under this policy.

        The asynchronous twin of :meth:`call`: the same waits, logging, limits, result and
        errors; the waits are ``asyncio.sleep`` so other tasks of the loop go on.

        Parameters
        ----------
        fn : callable
            A coroutine function; called anew on every attempt.
        *args, **kwargs
            Passed to ``fn`` on every attempt.
        """
        import asyncio

        hook = self._hook(getattr(fn, "__qualname__", None) or repr(fn))
        try:
            return await fn(*args, **kwargs)
        except TemporaryError as err:
            wait = _first_wait(hook, err)
        if wait:
            await asyncio.sleep(wait)
        async for attempt in stamina.retry_context(on=hook, attempts=self._retries(), timeout=None):
            with attempt:
                return await fn(*args, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover - stamina re-raises the last error

    def decorate(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Return ``fn`` wrapped so each call goes through :meth:`call`.

        Parameters
        ----------
        fn : callable
            The function to wrap (its name and docstring are kept, :func:`functools.wraps`).
        """

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return self.call(fn, *args, **kwargs)

        return wrapper


def retry_temporary(policy: RetryPolicy | None = None) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Return a decorator retrying :class:`TemporaryError` under ``policy`` (default :class:`RetryPolicy`).

    Parameters
    ----------
    policy : RetryPolicy, optional
        The policy; ``RetryPolicy()`` by default.
    """
    return (policy or RetryPolicy()).decorate


def retry_after_s_from_headers(headers: Mapping[str, Any] | None, *, now_s: float | None = None) -> float | None:
    """Return the wait a ``Retry-After`` header asks for, seconds, or None.

    Parameters
    ----------
    headers : mapping or None
        Response headers (case-insensitive lookup of ``Retry-After``).
    now_s : float, optional
        Current epoch time, seconds, for the HTTP-date form; ``time.time()`` by default.

    Returns
    -------
    float or None
        Delta-seconds, or the time until an HTTP-date (RFC 9110 section 10.2.3), >= 0;
        None when the header is absent or unreadable.
    """
    if not headers:
        return None
    value = None
    for key in ("Retry-After", "retry-after", "RETRY-AFTER"):
        value = headers.get(key) if hasattr(headers, "get") else None
        if value is not None:
            break
    if value is None:
        value = next((v for k, v in dict(headers).items() if str(k).lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        when = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now_s is None else now_s))


def translate_error(err: BaseException, *, what: str, headers: Mapping[str, Any] | None = None,
                    status: int | None = None) -> QuantnbError:
    """Map a foreign error at a network boundary to quantnb's classes (raise the result ``from err``).

    ==========================================================  =====================================
    foreign error                                               quantnb
    ==========================================================  =====================================
    a quantnb error                                             itself
    HTTP 429 or 418                                             RateLimitError(retry_after_s=...)
    HTTP 503 with a ``Retry-After`` header                      RateLimitError(retry_after_s=...)
    HTTP 5xx, ``TimeoutError``, ``ConnectionError``, ``OSError``  TemporaryError
    anything else                                               OperationalError
    ==========================================================  =====================================

    Parameters
    ----------
    err : BaseException
        The caught error.
    what : str
        The operation, named in the message (``GET /fapi/v1/klines``).
    headers : mapping, optional
        Response headers, read for ``Retry-After``.
    status : int, optional
        HTTP status of the failed response, when there was one.
    """
    from quantnb.errors import OperationalError

    if isinstance(err, QuantnbError):
        return err
    msg = f"{what}: {type(err).__name__}: {err}"
    if status in (418, 429):
        return RateLimitError(msg, retry_after_s=retry_after_s_from_headers(headers))
    if status == 503 and retry_after_s_from_headers(headers) is not None:  # RFC 9110 10.2.3: back in N s
        return RateLimitError(msg, retry_after_s=retry_after_s_from_headers(headers))
    if (status is not None and 500 <= status < 600) or isinstance(err, TimeoutError | ConnectionError | OSError):
        return TemporaryError(msg)
    return OperationalError(msg)
