from __future__ import annotations

import email.utils
import random

import pytest

from quantnb.errors import ConfigError, OperationalError, RateLimitError, TemporaryError
from quantnb.retry import RetryPolicy, retry_after_s_from_headers, translate_error


def test_backoff_grows_exponentially_with_bounded_jitter_and_a_cap():
    policy = RetryPolicy(wait_initial_s=0.5, wait_exp_base=2.0, wait_jitter_s=0.25, wait_max_s=3.0)
    rng = random.Random(7)
    for n, base in [(1, 0.5), (2, 1.0), (3, 2.0)]:
        waits = [policy.wait_s(TemporaryError("x"), n, rng) for _ in range(200)]
        assert all(base <= w <= base + 0.25 for w in waits) and len(set(waits)) > 100  # jittered
    assert all(policy.wait_s(TemporaryError("x"), n, rng) == 3.0 for n in (4, 10, 10_000))  # capped
    assert policy.wait_s(OperationalError("no"), 1) is None  # never retried


def test_retry_after_is_honoured_up_to_the_longest_ban_waited_out():
    policy = RetryPolicy(wait_initial_s=0.5, wait_jitter_s=0.0, max_retry_after_s=30.0)
    assert policy.wait_s(RateLimitError("429", retry_after_s=12.0), 1) == 12.0  # longer than the backoff, below cap
    assert policy.wait_s(RateLimitError("429", retry_after_s=0.1), 1) == 0.5  # the backoff when the venue asks less
    assert policy.wait_s(RateLimitError("418", retry_after_s=120.0), 1) is None  # a ban: re-raised, not waited


def test_retry_after_header_in_seconds_or_http_date():
    assert retry_after_s_from_headers({"Retry-After": "7"}) == 7.0
    assert retry_after_s_from_headers({"retry-after": "2.5"}) == 2.5
    when = email.utils.formatdate(1_000_030.0, usegmt=True)
    assert retry_after_s_from_headers({"Retry-After": when}, now_s=1_000_000.0) == pytest.approx(30.0)
    assert retry_after_s_from_headers({"Retry-After": "soon"}) is None
    assert retry_after_s_from_headers({}) is None and retry_after_s_from_headers(None) is None


def test_foreign_errors_are_translated_once_at_the_boundary():
    rl = translate_error(RuntimeError("slow down"), what="GET /x", status=429, headers={"Retry-After": "4"})
    assert isinstance(rl, RateLimitError) and rl.retry_after_s == 4.0 and "GET /x" in str(rl)
    assert type(translate_error(ConnectionResetError("reset"), what="ws")) is TemporaryError
    assert type(translate_error(TimeoutError(), what="ws")) is TemporaryError
    assert type(translate_error(ValueError("bad"), what="GET /y", status=503)) is TemporaryError
    assert type(translate_error(ValueError("bad"), what="GET /y", status=400)) is OperationalError
    same = TemporaryError("already ours")
    assert translate_error(same, what="x") is same


def test_attempts_and_timeout_bound_the_call_and_each_retry_is_a_warning(caplog_loguru):
    calls = []

    def always_down():
        calls.append(1)
        raise TemporaryError("503")

    with pytest.raises(TemporaryError):
        RetryPolicy(attempts=3, wait_jitter_s=0.0, timeout_s=None).call(always_down)
    assert len(calls) == 3
    retries = [m for m in caplog_loguru if m.startswith("WARNING") and "retrying in" in m]
    assert len(retries) == 2 and "attempt 1/3" in retries[0]
    assert any(m.startswith("ERROR") and "attempts spent" in m for m in caplog_loguru)
    calls.clear()
    with pytest.raises(TemporaryError):  # the next wait would end past timeout_s: give up at once
        RetryPolicy(attempts=10, wait_initial_s=5.0, wait_jitter_s=0.0, timeout_s=1.0).call(always_down)
    assert len(calls) == 1


@pytest.mark.parametrize("kwargs", [{"attempts": 0}, {"wait_initial_s": -1.0}, {"timeout_s": 0.0},
                                    {"wait_exp_base": 0.5}])
def test_policy_refuses_out_of_range_values(kwargs):
    with pytest.raises(ConfigError):
        RetryPolicy(**kwargs)


def test_session_restarts_wait_the_policys_growing_backoff_and_stop_at_a_clean_end(caplog_loguru):
    """Two connection emergencies, then a clean session: two restarts, waiting ~backoff_s * 2**(n-1) each."""
    import re
    from types import SimpleNamespace

    from quantnb.live import run_with_restarts

    causes = iter(["connection", "connection", None, "connection"])

    class Trader:
        def run(self):
            cause = next(causes)
            return SimpleNamespace(emergency=SimpleNamespace(cause=cause) if cause else None)

    sessions = run_with_restarts(Trader, max_restarts=3, backoff_s=0.01)
    assert [s.emergency.cause if s.emergency else None for s in sessions] == ["connection", "connection", None]
    waits = [float(re.search(r"retrying in ([0-9.]+) s", m).group(1)) for m in caplog_loguru if "live/session" in m]
    assert len(waits) == 2 and 0.01 <= waits[0] <= 0.0115 and 0.02 <= waits[1] <= 0.0215  # + up to backoff_s/10


def test_a_drawdown_emergency_is_never_restarted_and_spent_restarts_end_the_loop(caplog_loguru):
    from types import SimpleNamespace

    from quantnb.live import run_with_restarts

    def trader(cause):
        return lambda: SimpleNamespace(run=lambda: SimpleNamespace(emergency=SimpleNamespace(cause=cause)))

    assert len(run_with_restarts(trader("drawdown"), max_restarts=3, backoff_s=0.01)) == 1
    assert len(run_with_restarts(trader("connection"), max_restarts=2, backoff_s=0.01)) == 3
    assert any("live/session" in m and "attempts spent" in m for m in caplog_loguru)
