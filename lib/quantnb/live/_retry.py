"""The live trader's retries: :mod:`quantnb.retry` (kept as an import path for older code)."""

from __future__ import annotations

from quantnb.retry import RetryPolicy, retry_temporary

__all__ = ["RetryPolicy", "retry_temporary"]
