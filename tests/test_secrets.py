"""The one secret masker: raw, JSON- and repr-escaped forms of a secret are all masked."""

from __future__ import annotations

import json

import pytest

from quantnb._secrets import MASK, SecretMasker

NASTY = 'Zq9\\w"Xk!7'  # QNB_DB_PASSWORD='Zq9\w"Xk!7': a backslash and a double quote
QUOTED = "Zq9'x\\n\"7\\\\"  # both quotes, a backslash-n that is not a newline, a double backslash


def _leaks(text: str, secret: str) -> list[str]:
    """The forms of ``secret`` found in ``text``: raw, repr- and JSON-escaped, and both nested."""
    once = {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    twice = {json.dumps(f)[1:-1] for f in once} | {repr(f)[1:-1] for f in once}
    return [f for f in once | twice if f in text]


@pytest.mark.parametrize("secret", [NASTY, QUOTED, "s3cr3t-V4lue-77", "pässwört-ü"])
@pytest.mark.parametrize("wrap", [
    pytest.param(lambda r: r, id="raw"),
    pytest.param(repr, id="repr"),
    pytest.param(json.dumps, id="json"),
    pytest.param(lambda r: json.dumps({"reason": repr(r)}), id="json-of-repr"),  # an executed notebook's output
    pytest.param(lambda r: json.dumps(json.dumps(r)), id="json-of-json"),
    pytest.param(lambda r: json.dumps(r, ensure_ascii=False), id="json-unicode"),
])
def test_every_escaped_form_of_a_secret_is_masked(secret, wrap):
    reason = f"data/in/x.csv line 41: bad price {secret!r} in '5266583999,{secret},0.001'"
    text = wrap(reason)
    masked = SecretMasker([secret])(text)
    assert MASK in masked
    assert not _leaks(masked, secret), masked
    assert secret not in masked and secret.replace("\\", "\\\\") not in masked


def test_masking_leaves_ordinary_text_alone():
    text = json.dumps({"path": "C:\\data\\x.csv", "quote": 'say "hi"'})
    assert SecretMasker([NASTY])(text) == text
