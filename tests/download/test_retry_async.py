"""The one retry policy, awaited: RetryPolicy.acall (used by the download stage) and 503 + Retry-After."""

from __future__ import annotations

import asyncio
import time

import pytest

from quantnb.errors import DataError, RateLimitError, TemporaryError
from quantnb.retry import RetryPolicy, translate_error


def test_503_with_retry_after_becomes_a_rate_limit_error_with_the_wait():
    err = translate_error(RuntimeError("HTTP 503"), what="GET /x.zip", headers={"Retry-After": "7"}, status=503)
    assert isinstance(err, RateLimitError) and err.retry_after_s == 7.0
    plain = translate_error(RuntimeError("HTTP 503"), what="GET /x.zip", headers={}, status=503)
    assert type(plain) is TemporaryError


def test_acall_waits_what_the_venue_asks_then_succeeds_and_other_tasks_run_meanwhile():
    policy = RetryPolicy(attempts=3, wait_initial_s=0.0, wait_jitter_s=0.0, what="test")
    calls: list[float] = []
    ticks: list[float] = []

    async def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RateLimitError("503", retry_after_s=0.3)
        return "ok"

    async def ticker() -> None:
        for _ in range(5):
            ticks.append(time.monotonic())
            await asyncio.sleep(0.05)

    async def main() -> str:
        result, _ = await asyncio.gather(policy.acall(flaky), ticker())
        return result

    assert asyncio.run(main()) == "ok"
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.3
    assert sum(calls[0] < t < calls[1] for t in ticks) >= 3  # the wait did not block the loop


def test_acall_raises_a_non_temporary_error_at_once_and_the_last_temporary_one_when_spent():
    policy = RetryPolicy(attempts=2, wait_initial_s=0.0, wait_jitter_s=0.0, what="test")
    n = {"data": 0, "temp": 0}

    async def bad() -> None:
        n["data"] += 1
        raise DataError("corrupt")

    async def down() -> None:
        n["temp"] += 1
        raise TemporaryError(f"down {n['temp']}")

    with pytest.raises(DataError):
        asyncio.run(policy.acall(bad))
    with pytest.raises(TemporaryError, match="down 2"):
        asyncio.run(policy.acall(down))
    assert n == {"data": 1, "temp": 2}
