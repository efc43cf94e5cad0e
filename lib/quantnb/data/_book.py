"""Level-2 order book (price -> size per side) with an incrementally maintained top of book."""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from decimal import Decimal

from quantnb.errors import ConfigError, DataError

_INF = math.inf
Level = tuple[float, float]
MAX_PROBES = 256  # price steps walked from a deleted best level before a full rescan


def _decimals(price: float) -> int:
    """Decimals of a price parsed from a decimal string (its shortest repr round-trips)."""
    text = repr(price)
    if "e" in text or "E" in text:
        exp = Decimal(text).normalize().as_tuple().exponent
        return max(0, -exp) if isinstance(exp, int) else 0
    dot = text.find(".")
    return 0 if dot < 0 or text.endswith(".0") else len(text) - dot - 1


def _malformed(kind: str, err: Exception) -> str:
    return (f"malformed {kind} level ({err}); each level must be a (price, size) pair of floats — "
            "the parser passed a bad row: quarantine the file and reset the book from the next snapshot")


class OrderBook:
    """A level-2 order book: one ``price -> size`` map per side, best bid/ask kept incrementally.

    Updates are absolute: a level's new size replaces the old one and a size of 0 deletes
    the level (the convention of Bybit v5 and Binance USD-M depth streams). For speed the
    maps are updated in C (``dict.update``) and deleted levels stay as zero entries until
    :meth:`compact` (called by every depth/feature method); best bid/ask are updated from
    each message's extreme level and the side is rescanned only when its best level is
    deleted.

    Attributes
    ----------
    best_bid, best_ask : float
        Best prices, quote currency per base unit; ``nan`` while that side is empty.

    Notes
    -----
    Prices and sizes are Python floats parsed from the exchange's decimal strings; the same
    string always parses to the same float, so floats are exact dictionary keys.
    """

    __slots__ = ("_bids", "_asks", "_bb", "_ba", "_scale")

    def __init__(self) -> None:
        self._bids: dict[float, float] = {}
        self._asks: dict[float, float] = {}
        self._bb = -_INF
        self._ba = _INF
        self._scale = 0.0  # 10**decimals of the price grid; 0 = not inferred yet

    # -- updates -----------------------------------------------------------------------
    def reset(self, bids: Iterable[Level], asks: Iterable[Level]) -> tuple[float, float]:
        """Replace the whole book by a snapshot.

        Parameters
        ----------
        bids, asks : iterable of (price, size)
            Levels in quote currency per base unit and base units; sizes of 0 are ignored.

        Returns
        -------
        tuple of float
            ``(best_bid, best_ask)``; ``-inf`` / ``inf`` for an empty side.

        Raises
        ------
        DataError
            If a level is not a ``(price, size)`` pair of numbers.
        """
        try:
            self._bids = dict(bids)
            self._asks = dict(asks)
        except (TypeError, ValueError) as e:
            raise DataError(_malformed("snapshot", e)) from e
        self.compact()
        self._infer_scale()
        self._bb = max(self._bids) if self._bids else -_INF
        self._ba = min(self._asks) if self._asks else _INF
        return self._bb, self._ba

    def apply(self, bids: Sequence[Level], asks: Sequence[Level]) -> tuple[float, float]:
        """Apply one delta message: set each level's size, 0 deleting it.

        Parameters
        ----------
        bids, asks : sequence of (price, size)
            Changed levels; price in quote currency per base unit, size in base units >= 0.

        Returns
        -------
        tuple of float
            ``(best_bid, best_ask)`` after the update; ``-inf`` / ``inf`` for an empty side.

        Raises
        ------
        DataError
            If a level is not a ``(price, size)`` pair of numbers; the book is then
            inconsistent and must be reset from a snapshot.
        """
        try:
            if bids:
                bd = self._bids
                bd.update(bids)
                p = max(bids)[0]
                if p >= self._bb:  # the touch may have changed; the stored size decides (last of duplicates wins)
                    self._bb = p if bd[p] else self._next_bid(bids)
            if asks:
                ad = self._asks
                ad.update(asks)
                p = min(asks)[0]
                if p <= self._ba:
                    self._ba = p if ad[p] else self._next_ask(asks)
        except (TypeError, ValueError) as e:
            raise DataError(_malformed("delta", e)) from e
        return self._bb, self._ba

    def clear(self) -> None:
        """Empty both sides (the book is unsynced until the next snapshot)."""
        self._bids = {}
        self._asks = {}
        self._bb = -_INF
        self._ba = _INF

    def compact(self) -> None:
        """Drop the zero-size entries left by deletions (done lazily for speed)."""
        if 0.0 in self._bids.values():
            self._bids = {p: s for p, s in self._bids.items() if s}
        if 0.0 in self._asks.values():
            self._asks = {p: s for p, s in self._asks.items() if s}

    def _infer_scale(self) -> None:
        prices = [*self._bids, *self._asks]
        if prices:
            self._scale = float(10 ** max(map(_decimals, prices)))

    def _next_bid(self, bids: Sequence[Level]) -> float:
        """Best bid after the old best (or a level above it) was deleted by ``bids``."""
        bb, bd = self._bb, self._bids
        above = [p for p, _ in bids if p > bb and bd[p]]
        if above:
            return max(above)
        if bd.get(bb):  # the deleted level was above the best, which stands
            return bb
        if not self._scale:
            self._infer_scale()
        scale = self._scale
        if bb > -_INF and scale:
            n = round(bb * scale)
            for k in range(1, MAX_PROBES):
                if bd.get((n - k) / scale):
                    return (n - k) / scale
        return self._full_rescan()[0]

    def _next_ask(self, asks: Sequence[Level]) -> float:
        """Best ask after the old best (or a level below it) was deleted; see :meth:`_next_bid`."""
        ba, ad = self._ba, self._asks
        below = [p for p, _ in asks if p < ba and ad[p]]
        if below:
            return min(below)
        if ad.get(ba):
            return ba
        if not self._scale:
            self._infer_scale()
        scale = self._scale
        if ba < _INF and scale:
            n = round(ba * scale)
            for k in range(1, MAX_PROBES):
                if ad.get((n + k) / scale):
                    return (n + k) / scale
        return self._full_rescan()[1]

    def _full_rescan(self) -> tuple[float, float]:
        self.compact()
        self._bb = max(self._bids) if self._bids else -_INF
        self._ba = min(self._asks) if self._asks else _INF
        return self._bb, self._ba

    def check_top(self) -> bool:
        """Verify the incrementally kept best bid/ask against a full scan; repair them if wrong.

        Returns
        -------
        bool
            True if they were right. False means a price off the inferred price grid
            (e.g. a tick-size change without a snapshot); the top is rebuilt.
        """
        before = (self._bb, self._ba)
        if before == self._full_rescan():
            return True
        self._infer_scale()
        return False

    # -- top of book ---------------------------------------------------------------------
    @property
    def best_bid(self) -> float:
        """Best bid price, quote per base unit; ``nan`` if there is no bid."""
        return self._bb if self._bids and self._bb != -_INF else math.nan

    @property
    def best_ask(self) -> float:
        """Best ask price, quote per base unit; ``nan`` if there is no ask."""
        return self._ba if self._asks and self._ba != _INF else math.nan

    @property
    def is_crossed(self) -> bool:
        """Whether best bid > best ask (an impossible state for a correct book)."""
        return self._bb > self._ba

    @property
    def mid(self) -> float:
        """Mid price ``(best_bid + best_ask) / 2``; ``nan`` if a side is empty."""
        return (self.best_bid + self.best_ask) / 2.0

    @property
    def spread_bps(self) -> float:
        """Spread in basis points of the mid: ``1e4 * (ask - bid) / mid``; ``nan`` if a side is empty."""
        bid, ask = self.best_bid, self.best_ask
        return 2e4 * (ask - bid) / (ask + bid)

    @property
    def micro_price(self) -> float:
        """Size-weighted mid of the top of book (micro-price); ``nan`` if a side is empty.

        ``(bid * ask_size + ask * bid_size) / (bid_size + ask_size)``: the price leans
        toward the side with less size, i.e. where the next move is likelier.

        References
        ----------
        Stoikov, "The micro-price: a high-frequency estimator of future prices",
        Quantitative Finance 18(12), 2018. The formula is the paper's size-weighted mid
        (its first-order micro-price); the project calls it the micro-price.
        """
        bid, ask = self.best_bid, self.best_ask
        if math.isnan(bid) or math.isnan(ask):
            return math.nan
        qb, qa = self._bids[bid], self._asks[ask]
        return (bid * qa + ask * qb) / (qb + qa)

    # -- depth -----------------------------------------------------------------------------
    def levels(self, side: str, n_levels: int | None = None) -> list[Level]:
        """Return the levels of one side, best first.

        Parameters
        ----------
        side : {"bid", "ask"}
            Which side.
        n_levels : int or None
            How many levels from the top; all if None.

        Returns
        -------
        list of (price, size)
            Bids by descending price, asks by ascending price.

        Raises
        ------
        ConfigError
            If ``side`` is neither ``"bid"`` nor ``"ask"`` (a ``ValueError`` too).
        """
        self.compact()
        if side == "bid":
            book, prices = self._bids, heapq.nlargest(n_levels, self._bids) if n_levels else sorted(self._bids)[::-1]
        elif side == "ask":
            book, prices = self._asks, heapq.nsmallest(n_levels, self._asks) if n_levels else sorted(self._asks)
        else:
            raise ConfigError(f"OrderBook.levels: side={side!r}; pass side='bid' or side='ask'")
        return [(p, book[p]) for p in prices]

    def n_levels(self) -> tuple[int, int]:
        """Return the number of non-empty ``(bid, ask)`` levels."""
        self.compact()
        return len(self._bids), len(self._asks)

    def depth(self, n_levels: int = 10) -> tuple[float, float]:
        """Return the summed size of the top ``n_levels`` levels per side.

        Parameters
        ----------
        n_levels : int
            Levels per side, counted from the best price (not a price band).

        Returns
        -------
        tuple of float
            ``(bid_depth, ask_depth)`` in base units (0.0 for an empty side).
        """
        self.compact()
        bd, ad = self._bids, self._asks
        return (sum(map(bd.__getitem__, heapq.nlargest(n_levels, bd))),
                sum(map(ad.__getitem__, heapq.nsmallest(n_levels, ad))))

    def imbalance(self, n_levels: int = 10) -> float:
        """Return the depth imbalance of the top ``n_levels`` levels per side.

        Parameters
        ----------
        n_levels : int, default 10
            Levels per side, counted from the best price.

        Returns
        -------
        float
            ``(bid_depth - ask_depth) / (bid_depth + ask_depth)`` in [-1, 1]; ``nan`` when
            the book is empty. Positive means more resting size on the bid.
        """
        b, a = self.depth(n_levels)
        return (b - a) / (b + a) if b + a > 0 else math.nan
