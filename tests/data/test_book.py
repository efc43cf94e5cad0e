from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from quantnb.data import OrderBook
from tests.data._samples import BYBIT_BTC


def _naive_best(bids: dict[float, float], asks: dict[float, float]) -> tuple[float, float]:
    return max(bids, default=-math.inf), min(asks, default=math.inf)


def test_zero_size_deletes_the_best_level_and_the_next_one_becomes_best():
    book = OrderBook()
    book.reset([(100.0, 1.0), (99.5, 2.0), (99.0, 3.0)], [(101.0, 1.0), (102.0, 4.0)])
    book.apply([(100.0, 0.0)], [(101.0, 0.0)])
    assert (book.best_bid, book.best_ask) == (99.5, 102.0)
    assert book.n_levels() == (2, 1)


def test_micro_price_leans_toward_the_side_with_less_size():
    book = OrderBook()
    bid, ask, bid_qty, ask_qty = 100.0, 101.0, 1.0, 3.0
    book.reset([(bid, bid_qty)], [(ask, ask_qty)])
    assert math.isclose(book.micro_price, (bid * ask_qty + ask * bid_qty) / (bid_qty + ask_qty))
    assert bid < book.micro_price < book.mid  # more size on the ask: the price leans to the bid


def test_spread_depth_and_imbalance_use_the_top_levels_only():
    bids = [(100.0 - i, float(i + 1)) for i in range(15)]
    asks = [(101.0 + i, 2.0) for i in range(15)]
    book = OrderBook()
    book.reset(bids, asks)
    bid_depth, ask_depth = book.depth(10)
    assert bid_depth == sum(size for _, size in bids[:10])
    assert ask_depth == 2.0 * 10
    assert math.isclose(book.imbalance(10), (bid_depth - ask_depth) / (bid_depth + ask_depth))
    assert math.isclose(book.spread_bps, 1e4 * (101.0 - 100.0) / 100.5)
    assert book.levels("bid", 3) == bids[:3]


def test_empty_book_reports_nan_not_a_number_from_sentinels():
    book = OrderBook()
    assert math.isnan(book.best_bid) and math.isnan(book.mid) and math.isnan(book.micro_price)
    assert book.depth(10) == (0.0, 0.0) and math.isnan(book.imbalance(10))


_update = st.tuples(st.integers(0, 60), st.sampled_from([0.0, 0.0, 0.5, 1.0, 2.5]))


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 3),  # decimals of the price grid
    st.lists(st.tuples(st.lists(_update, max_size=6), st.lists(_update, max_size=6)), max_size=40),
)
def test_incremental_best_prices_and_depth_match_a_naive_book(decimals, messages):
    scale = 10**decimals
    book = OrderBook()
    naive_b: dict[float, float] = {}
    naive_a: dict[float, float] = {}
    snap_b = [((1000 - i) / scale, 1.0) for i in range(0, 20, 2)]
    snap_a = [((1001 + i) / scale, 1.0) for i in range(0, 20, 3)]
    book.reset(snap_b, snap_a)
    naive_b.update(snap_b)
    naive_a.update(snap_a)
    for raw_b, raw_a in messages:
        bids = [((1000 - k) / scale, s) for k, s in raw_b]  # bids at or below 1000 ticks
        asks = [((1001 + k) / scale, s) for k, s in raw_a]  # asks at or above 1001: never crossed
        bb, ba = book.apply(bids, asks)
        for side, levels in ((naive_b, bids), (naive_a, asks)):
            for p, s in levels:
                if s:
                    side[p] = s
                else:
                    side.pop(p, None)
        assert (bb, ba) == _naive_best(naive_b, naive_a)
        top_b = sorted(naive_b, reverse=True)[:10]
        top_a = sorted(naive_a)[:10]
        assert book.depth(10) == (sum(naive_b[p] for p in top_b), sum(naive_a[p] for p in top_a))


def test_real_bybit_replay_keeps_200_levels_a_side_never_crosses_and_ends_at_documented_touch():
    book = OrderBook()
    with open(BYBIT_BTC) as fh:
        for n, line in enumerate(fh, 1):
            msg = json.loads(line)
            bids = [(float(p), float(s)) for p, s in msg["data"]["b"]]
            asks = [(float(p), float(s)) for p, s in msg["data"]["a"]]
            bb, ba = book.reset(bids, asks) if msg["type"] == "snapshot" else book.apply(bids, asks)
            assert bb < ba, f"crossed at line {n}"
            assert book.n_levels() == (200, 200), f"line {n}"
    assert (book.best_bid, book.best_ask) == (65114.2, 65114.3)
