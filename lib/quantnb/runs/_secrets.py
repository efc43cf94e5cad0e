"""Secret masking for the log sinks; the implementation lives in :mod:`quantnb._secrets`.

It sits outside this package so :mod:`quantnb.config` can refuse secret parameters
without importing the run-logging spine (no config <-> runs import cycle).
"""

from __future__ import annotations

from quantnb._secrets import MASK, SecretMasker, secret_values

__all__ = ["MASK", "SecretMasker", "secret_values"]
