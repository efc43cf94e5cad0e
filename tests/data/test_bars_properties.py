"""Property tests of the pure 1-minute transforms (resampling, chunk combining, gap flags)."""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import example, given, settings
from hypothesis import strategies as st

from quantnb.data._bars import combine_trade_bars, flag_gaps, trades_to_bars

BASE_MS = 1_704_153_600_000  # 2024-01-02 00:00 UTC

_trade = st.tuples(
    st.integers(0, 10 * 60_000),  # ms after BASE_MS
    st.floats(1.0, 1e5, allow_nan=False),
    st.floats(0.0, 50.0, allow_nan=False),
    st.booleans(),
)


def _frame(trades: list[tuple[int, float, float, bool]]) -> pl.DataFrame:
    ordered = sorted(trades, key=lambda t: t[0])
    return pl.DataFrame(
        {"ts_ms": [BASE_MS + t for t, *_ in ordered], "id": list(range(len(ordered))),
         "price": [p for _, p, _, _ in ordered], "qty": [q for _, _, q, _ in ordered],
         "is_buyer_maker": [m for *_, m in ordered]},
        schema={"ts_ms": pl.Int64, "id": pl.Int64, "price": pl.Float64, "qty": pl.Float64,
                "is_buyer_maker": pl.Boolean},
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(_trade, max_size=80))
@example([])
def test_trade_bars_conserve_volume_and_count_and_bracket_prices(trades):
    frame = _frame(trades)
    bars = trades_to_bars(frame)
    assert bars.height == frame.select((pl.col("ts_ms") // 60_000).n_unique()).item()
    assert bars["n_trades"].sum() == len(trades)
    assert abs(bars["volume"].sum() - frame["qty"].sum()) <= 1e-9 * max(1.0, frame["qty"].sum())
    assert (bars["buy_volume"] <= bars["volume"] + 1e-9).all()
    assert bars.select((pl.col("low") <= pl.min_horizontal("open", "close")).all()).item()
    assert bars.select((pl.col("high") >= pl.max_horizontal("open", "close")).all()).item()
    assert bars["ts"].is_sorted() and (bars["ts"].dt.second() == 0).all()
    if trades:
        first = frame.row(0, named=True)
        assert bars["open"][0] == first["price"]


@settings(max_examples=60, deadline=None)
@given(st.lists(_trade, max_size=80), st.lists(st.integers(0, 80), max_size=4))
@example([], [])
def test_bars_of_chunks_combined_equal_bars_of_the_whole(trades, cuts):
    frame = _frame(trades)
    bounds = sorted({0, frame.height, *[min(c, frame.height) for c in cuts]})
    chunks = [trades_to_bars(frame[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    combined = combine_trade_bars(pl.concat(chunks) if chunks else trades_to_bars(frame))
    whole = trades_to_bars(frame)
    exact = ["ts", "open", "high", "low", "close", "n_trades", "first_ms", "last_ms"]
    assert combined.select(exact).equals(whole.select(exact))
    for col in ("volume", "buy_volume"):
        for a, b in zip(combined[col], whole[col], strict=True):
            assert abs(a - b) <= 1e-9 * max(1.0, abs(b))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 500), max_size=40, unique=True))
@example([])
def test_gap_flag_is_true_exactly_after_holes_of_two_minutes_or_more(minutes):
    minutes = sorted(minutes)
    ts = [dt.datetime(2024, 1, 2, tzinfo=dt.UTC) + dt.timedelta(minutes=m) for m in minutes]
    frame = pl.DataFrame({"ts": ts}, schema={"ts": pl.Datetime("us", "UTC")})
    flags = frame.select(flag_gaps(pl.col("ts")))["ts"].to_list()
    expected = [i > 0 and minutes[i] - minutes[i - 1] >= 2 for i in range(len(minutes))]
    assert flags == expected
