"""The broker interface the trader talks to: orders, account, positions, emergency close."""

from __future__ import annotations

import abc

from quantnb.agent import Fill
from quantnb.live._types import AccountState, Bar, MarketRules, Side

__all__ = ["Broker"]


class Broker(abc.ABC):
    """One account on one venue, trading one symbol.

    Implementations raise only :class:`~quantnb.errors.TemporaryError` or
    :class:`~quantnb.errors.RateLimitError` (a retry may cure it) and
    :class:`~quantnb.errors.OperationalError` (halts trading). ``cheap_account``: :meth:`account`
    costs no request (paper), so the trader re-reads it after each fill instead of estimating it.
    """

    symbol: str
    rules: MarketRules
    cheap_account: bool = False

    def connect(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Open the connection and load the market rules (no-op for paper trading)."""

    def close(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Release the connection."""

    def on_bar(self, close_price: float, next_open: float | None, *, bar: Bar | None = None) -> None:  # noqa: B027
        """Tell the broker a candle closed (paper brokers revalue; venues ignore it)."""

    @abc.abstractmethod
    def account(self) -> AccountState:
        """Return balance, equity and the position in :attr:`symbol`."""

    @abc.abstractmethod
    def positions(self) -> dict[str, float]:
        """Return every open position of the account: symbol to signed quantity, base units."""

    @abc.abstractmethod
    def market_order(self, side: Side, qty: float, *, reduce_only: bool = False,
                     client_order_id: str | None = None) -> Fill:
        """Send a market order on :attr:`symbol` (``qty`` > 0, base units, on ``rules.qty_step``); return its fill.

        ``client_order_id`` is an idempotency key: sent again after a failure, the order the venue
        already took is returned instead of a second one.
        """

    @abc.abstractmethod
    def cancel_all(self) -> int:
        """Cancel every open order on :attr:`symbol`; return how many were open."""

    @abc.abstractmethod
    def close_position(self, symbol: str, qty: float, *, client_order_id: str | None = None) -> Fill:
        """Flatten ``qty`` (signed, base units) of ``symbol`` with a reduce-only market order."""

    def funding_paid_usd(self) -> float | None:
        """Return the funding booked so far, USD (< 0: received): a paper broker's; None where the venue books it."""
        return None

    def in_flight_qty(self) -> float:
        """Return the signed quantity sent but not yet filled, base units (a paper broker's latency; else 0)."""
        return 0.0

    def open_orders(self) -> list[str]:
        """Return the client order ids of orders resting on :attr:`symbol` (none on paper)."""
        return []

    def order_status(self, client_order_id: str) -> tuple[str, Fill | None]:
        """Ask the venue what became of ``client_order_id``.

        Returns ``("filled", fill)``, ``("open", None)`` (resting or partly filled) or ``("missing", None)``
        (never taken); paper brokers keep nothing across processes: always ``missing``.
        """
        return "missing", None
