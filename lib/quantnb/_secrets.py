"""Secret values of the environment, and masking them in text."""

from __future__ import annotations

import functools
import os
import re

_SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD", re.IGNORECASE)
_MIN_SECRET_LEN = 4  # shorter values ("1", "on") would mask ordinary characters
MASK = "***"


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """Return the values of environment variables whose names look secret.

    A name containing KEY, SECRET, TOKEN or PASSWORD (any case) marks its value as a
    secret; values shorter than 4 characters are ignored (they would mask ordinary text).

    Parameters
    ----------
    environ : dict of str to str, optional
        Environment to scan; ``os.environ`` by default.

    Returns
    -------
    list of str
        Secret values, longest first (so a secret containing another is masked whole).
    """
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= _MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


@functools.lru_cache(maxsize=16)
def _compile(values: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(v) for v in values))


class SecretMasker:
    """Replace secret values in text with ``***``.

    Parameters
    ----------
    values : list of str, optional
        Secrets to mask; by default those found by :func:`secret_values` at construction.
    """

    def __init__(self, values: list[str] | None = None):
        self.values = secret_values() if values is None else sorted(values, key=len, reverse=True)
        self._pattern = _compile(tuple(self.values)) if self.values else None

    def __call__(self, text: str) -> str:
        """Return ``text`` with every secret value replaced by ``***``."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def __bool__(self) -> bool:
        return self._pattern is not None
