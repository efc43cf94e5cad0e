"""Secret values of the environment, and masking them in text."""

from __future__ import annotations

import functools
import json
import os
import re
from urllib.parse import parse_qs, urlsplit

from quantnb.errors import ConfigError

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


_ESCAPE_DEPTH = 2  # a repr inside a JSON string (a quarantine reason in a notebook's output) is two levels


def _escapes(text: str) -> set[str]:
    """One level of quoting: JSON (ASCII and not) and Python ``repr``, without the quotes."""
    return {json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1], repr(text)[1:-1]}


def escaped_forms(value: str) -> list[str]:
    """Return ``value`` and its JSON- and ``repr``-escaped forms, up to two levels deep, longest first.

    A secret holding a backslash or a quote is written escaped once in run.json or a ``repr``
    (a backslash doubled), and twice in a notebook's JSON quoting a ``repr``; masking only the
    raw value would let those through.
    """
    forms, level = {value}, {value}
    for _ in range(_ESCAPE_DEPTH):
        level = {e for f in level for e in _escapes(f)} - forms
        forms |= level
    return sorted(forms, key=len, reverse=True)


@functools.lru_cache(maxsize=16)
def _compile(values: tuple[str, ...]) -> re.Pattern[str]:
    forms = sorted({f for v in values for f in escaped_forms(v)}, key=len, reverse=True)
    return re.compile("|".join(re.escape(f) for f in forms))


class SecretMasker:
    """Replace secret values in text with ``***``, raw or JSON/``repr``-escaped (see :func:`escaped_forms`).

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


def refuse_password_in_url(url: str, *, what: str, env: str) -> str:
    """Refuse a URL that carries a password (ConfigError, a ValueError for pydantic too); else return it.

    Parameters are written to ``run.json``, the executed notebook and the session log, so a
    password must come from the environment (``env`` names it). Stage parameter models call this
    in a validator, so the refusal comes before the run exists (nothing written).
    """
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.password is not None or "password" in {k.lower() for k in parse_qs(parts.query)}:
        raise ConfigError(f"{what} carries a password, which would be written to run.json, the notebook and the "
                          f"logs; remove it from the URL and set {env} in the environment instead")
    return url
