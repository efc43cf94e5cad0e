"""Which REST and stream addresses a session may send its keys and orders to (checked before any request)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from quantnb.errors import ConfigError

__all__ = ["TESTNET_HOSTS", "check_endpoint_override"]

#: Binance USD-M's own demo-trading / testnet hosts (REST and market streams), reachable over TLS only.
TESTNET_HOSTS = frozenset({"demo-fapi.binance.com", "testnet.binancefuture.com", "fstream.binancefuture.com",
                           "stream.binancefuture.com"})
_TLS = {"https", "wss"}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint_override(mode: str, name: str, url: str | None) -> None:
    """Refuse (ConfigError, before any connection) an endpoint override that could reach a foreign host.

    ``live`` takes no override at all (real keys go to Binance's own hosts only). ``testnet``
    takes a loopback address (``127.0.0.0/8``, ``::1``, ``localhost``; the loopback servers of
    :mod:`quantnb.testing`) or one of :data:`TESTNET_HOSTS` over TLS (``https``/``wss``).
    ``replay`` sends nothing, so any value passes.
    """
    if url is None or mode == "replay":
        return
    if mode == "live":
        raise ConfigError(f"{name}={url!r}: mode='live' takes no endpoint override (the API keys would be sent "
                          f"there); remove {name} — live trading talks to Binance's own hosts only (nothing was sent)")
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.username or parts.password:
        raise ConfigError(f"{name}: a URL with credentials is refused; keys come from the environment only")
    if _is_loopback(host):
        return
    if host in TESTNET_HOSTS and parts.scheme in _TLS:
        return
    raise ConfigError(f"{name}={parts.scheme}://{host}{parts.path}: mode='testnet' sends its API keys only to a "
                      f"loopback address (127.0.0.1, a test server) or to Binance's testnet over TLS "
                      f"({', '.join(sorted(TESTNET_HOSTS))} with https/wss); fix {name} or leave it unset "
                      "(nothing was sent)")
