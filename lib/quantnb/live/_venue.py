"""Binance USD-M through ccxt: credentials from the environment, exchange setup, error translation.

Exchange errors are translated here, once, into quantnb's classes, with every message
scrubbed of query strings (signatures, timestamps) and of secret values.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import ccxt

from quantnb.errors import (
    ConfigError,
    OperationalError,
    OrderRejectedError,
    QuantnbError,
    RateLimitError,
    TemporaryError,
)
from quantnb.live._endpoints import check_endpoint_override
from quantnb.retry import retry_after_s_from_headers
from quantnb.runs import SecretMasker

__all__ = ["Mode", "ENV_KEYS", "credentials_from_env", "make_exchange", "translate_ccxt_error", "scrub"]

Mode = Literal["replay", "testnet", "live"]

ENV_KEYS: dict[str, tuple[str, str]] = {
    "live": ("QUANTNB_BINANCE_API_KEY", "QUANTNB_BINANCE_API_SECRET"),
    "testnet": ("QUANTNB_BINANCE_TESTNET_API_KEY", "QUANTNB_BINANCE_TESTNET_API_SECRET"),
}

WS_URLS: dict[str, str] = {  # Binance USD-M market streams; demo trading streams from the testnet host
    "live": "wss://fstream.binance.com/ws",
    "testnet": "wss://fstream.binancefuture.com/ws",
}

_QUERY = re.compile(r"\?[^\s\"']*")
_SIGNATURE = re.compile(r"signature=[0-9a-fA-F]+")


def credentials_from_env(mode: str, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """Return ``(api_key, api_secret)`` for ``mode`` from ``QUANTNB_BINANCE[_TESTNET]_API_KEY``/``..._SECRET``.

    Raises ConfigError naming the variable (never a value) if one is unset or empty.
    """
    if mode not in ENV_KEYS:
        raise ConfigError(f"mode={mode!r} trades no exchange account; API keys exist for 'testnet' and 'live'")
    env = os.environ if environ is None else environ
    key_var, secret_var = ENV_KEYS[mode]
    missing = [v for v in (key_var, secret_var) if not env.get(v)]
    if missing:
        raise ConfigError(f"mode={mode!r} needs API keys in the environment: set {' and '.join(missing)} "
                          f"(never pass keys as parameters)")
    return env[key_var], env[secret_var]


def make_exchange(mode: str, *, base_url: str | None = None, timeout_s: float = 10.0,
                  credentials: tuple[str, str] | None = None) -> Any:
    """Build a ``ccxt.binanceusdm`` for ``mode``.

    Parameters
    ----------
    mode : {"testnet", "live"}
        ``testnet`` uses Binance's demo-trading endpoints (``demo-fapi.binance.com``):
        ccxt 4.5 refuses ``set_sandbox_mode`` for USD-M futures and points users to demo
        trading instead.
    base_url : str, optional
        Loopback server root (tests, offline demos); replaces every API URL.
    timeout_s : float
        HTTP timeout per request, seconds.
    credentials : tuple of str, optional
        ``(api_key, api_secret)``; None builds a public-only exchange (klines).

    Returns
    -------
    ccxt.binanceusdm
        Not yet connected (markets not loaded).

    Raises
    ------
    ConfigError
        If ``mode`` is not ``testnet`` or ``live``, or ``base_url`` could send the keys to a
        foreign host (:func:`quantnb.live._endpoints.check_endpoint_override`).
    """
    if mode not in ENV_KEYS:
        raise ConfigError(f"mode={mode!r}: an exchange connection exists for 'testnet' and 'live' only")
    check_endpoint_override(mode, "base_url", base_url)
    config: dict[str, Any] = {"timeout": int(timeout_s * 1000), "enableRateLimit": True,
                              "options": {"fetchMarkets": {"types": ["linear"]}, "fetchCurrencies": False}}
    if credentials is not None:
        config["apiKey"], config["secret"] = credentials
    exchange = ccxt.binanceusdm(config)
    if mode == "testnet":
        exchange.enable_demo_trading(True)
    if base_url is not None:
        _use_base_url(exchange, base_url)
    return exchange


def _use_base_url(exchange: Any, base_url: str) -> None:
    """Send every REST call to ``base_url`` (a loopback server or a testnet host) as Binance's own host would be."""
    root = base_url.rstrip("/")
    exchange.urls["api"] = {name: root + urlsplit(url).path if isinstance(url, str) else url
                            for name, url in exchange.urls["api"].items()}
    exchange.enableRateLimit = False  # the override has no weight budget to share; faults are injected instead
    linear = exchange.exceptions.get("linear", {})  # the USD-M error codes ccxt applies to fapi.binance.com
    for kind in ("exact", "broad"):
        exchange.exceptions[kind] = {**exchange.exceptions.get(kind, {}), **linear.get(kind, {})}


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Return ``text`` without URL query strings, signatures, or secret values."""
    text = _SIGNATURE.sub("signature=***", _QUERY.sub("?<query removed>", text))
    text = SecretMasker()(text)
    return SecretMasker([s for s in secrets if s])(text) if any(secrets) else text


def _retry_after_s(exchange: Any) -> float | None:
    return retry_after_s_from_headers(getattr(exchange, "last_response_headers", None) or {})


def translate_ccxt_error(err: Exception, *, what: str, exchange: Any = None,
                         secrets: tuple[str, ...] = ()) -> QuantnbError:
    """Map a ccxt exception to quantnb's classes, scrubbed, naming the operation.

    ============================================  ===================================
    ccxt                                          quantnb
    ============================================  ===================================
    DDoSProtection, RateLimitExceeded (418/429)   RateLimitError(retry_after_s=...)
    OperationFailed: NetworkError, RequestTimeout TemporaryError
    ExchangeNotAvailable, 5xx (-1001), BadResponse
    InsufficientFunds (-2019), InvalidOrder       OrderRejectedError (one order refused;
    (not OrderNotFound)                           the trader skips it)
    AuthenticationError, any other ExchangeError  OperationalError
    ============================================  ===================================

    Parameters
    ----------
    err : Exception
        The ccxt exception.
    what : str
        The operation, e.g. ``create market order BTC/USDT:USDT``.
    exchange : ccxt.Exchange, optional
        Read for the ``Retry-After`` header of the failed response.
    secrets : tuple of str
        Values to mask in the message.

    Returns
    -------
    QuantnbError
        Raise it ``from None``: the ccxt message (with its URL) is not chained.

    References
    ----------
    Binance USD-M Futures "General Info": 429 and 418 carry ``Retry-After``; 5xx means
    the execution status is unknown.
    """
    msg = f"binanceusdm {what}: {type(err).__name__}: {scrub(str(err), secrets)}"
    if isinstance(err, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
        return RateLimitError(msg, retry_after_s=_retry_after_s(exchange))
    if isinstance(err, ccxt.OperationFailed):
        return TemporaryError(msg)
    if isinstance(err, ccxt.InsufficientFunds) or (isinstance(err, ccxt.InvalidOrder)
                                                   and not isinstance(err, ccxt.OrderNotFound)):
        return OrderRejectedError(msg)
    if isinstance(err, ccxt.AuthenticationError):
        return OperationalError(msg + " — check the API key's permissions (futures trading enabled, IP allowed)")
    return OperationalError(msg)
