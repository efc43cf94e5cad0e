"""A seeded, always-valid level-2 book random walk on an integer tick grid, for the file builders."""

from __future__ import annotations

import random

Levels = list[tuple[int, float]]  # (price in ticks, size); size 0.0 deletes


class BookSim:
    """Random walk of a book that never crosses: sizes change, levels appear and vanish, the touch moves."""

    def __init__(self, rng: random.Random, mid_ticks: int, n_levels: int) -> None:
        self.rng = rng
        self.n_levels = n_levels
        self.bids = {mid_ticks - 1 - i: self._size() for i in range(n_levels)}
        self.asks = {mid_ticks + i: self._size() for i in range(n_levels)}

    def _size(self) -> float:
        return round(self.rng.uniform(0.001, 5.0), 3)

    @property
    def best_bid(self) -> int:
        return max(self.bids)

    @property
    def best_ask(self) -> int:
        return min(self.asks)

    def step(self) -> tuple[Levels, Levels]:
        """Return one delta (bids, asks) and apply it; the book stays uncrossed and non-empty."""
        bids: dict[int, float] = {}
        asks: dict[int, float] = {}
        for _ in range(self.rng.randint(1, 4)):
            side, book, out = (("bid", self.bids, bids) if self.rng.random() < 0.5 else ("ask", self.asks, asks))
            move = self.rng.random()
            best = self.best_bid if side == "bid" else self.best_ask
            away = -1 if side == "bid" else 1
            if move < 0.15 and len(book) > 5:  # the touch is taken: delete the best level
                out[best] = 0.0
                del book[best]
            elif move < 0.30:  # a new level improves the touch (never crossing the other side)
                price = best - away
                other = self.best_ask if side == "bid" else self.best_bid
                if (side == "bid" and price < other) or (side == "ask" and price > other):
                    out[price] = book[price] = self._size()
            elif move < 0.40 and len(book) > 5:  # a level inside the book vanishes
                price = self.rng.choice(sorted(book)[:-1] if side == "bid" else sorted(book)[1:])
                out[price] = 0.0
                del book[price]
            else:  # a size changes near the touch
                price = best + away * self.rng.randint(0, 8)
                out[price] = book[price] = self._size()
        return sorted(bids.items(), reverse=True), sorted(asks.items())
