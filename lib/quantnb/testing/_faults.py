"""Fault plans for the loopback exchange servers: what the next N requests to an endpoint suffer."""

from __future__ import annotations

import dataclasses
import threading
from typing import Literal

FaultKind = Literal["status", "timeout", "drop"]

# Binance's error bodies for the statuses we inject (USD-M Futures "Error Codes" and
# "General Info: HTTP Return Codes"). 5xx: "the execution status is UNKNOWN".
ERROR_BODIES: dict[int, tuple[int, str]] = {
    400: (-2019, "Margin is insufficient."),  # an order the venue refuses (ccxt: InsufficientFunds)
    418: (-1003, "Way too many requests; IP(127.0.0.1) banned until {until}. Please use the websocket for "
                 "live updates to avoid bans."),
    429: (-1003, "Too many requests; current limit of IP(127.0.0.1) is 2400 requests per minute. Please use "
                 "the websocket for live updates to avoid polling the API."),
    500: (-1001, "Internal error; unable to process your request. Please try again."),
    502: (-1001, "Internal error; unable to process your request. Please try again."),
    503: (-1001, "Service Unavailable."),
    504: (-1007, "Timeout waiting for response from backend server. Send status unknown; execution status "
                 "unknown."),
}


@dataclasses.dataclass
class Fault:
    """One injected fault (what each field does is beside it)."""

    # status: reply with ``status`` (and Retry-After when retry_after_s is set); timeout: wait delay_s before
    # answering; drop: close the TCP connection without a reply
    kind: FaultKind
    path: str | None = None  # endpoint path such as /fapi/v1/order; None matches every path
    method: str | None = None  # HTTP method to match; None matches every method
    count: int = 1  # how many matching requests suffer it
    status: int = 503  # HTTP status for kind="status"
    retry_after_s: float | None = None  # value of the Retry-After header, seconds
    delay_s: float = 5.0  # wait for kind="timeout", seconds
    # process the request (e.g. fill the order) before the fault strikes: the venue acted but the client never
    # learns it, as with Binance's "execution status unknown"
    after_processing: bool = False


class FaultPlan:
    """Thread-safe queue of faults, consumed by matching requests in order of injection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.struck: list[tuple[str, str, str]] = []

    def add(self, fault: Fault) -> None:
        """Queue ``fault``."""
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        """Consume one count of the first queued fault matching a request."""
        with self._lock:
            for f in self._faults:
                if f.count > 0 and f.path in (None, path) and f.method in (None, method):
                    f.count -= 1
                    self.struck.append((method, path, f.kind))
                    if f.count == 0:
                        self._faults.remove(f)
                    return f
        return None
