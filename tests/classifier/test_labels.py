from __future__ import annotations

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from quantnb.classifier import (
    BUY,
    NEUTRAL,
    SELL,
    format_distribution,
    label_bars,
    label_counts,
    label_distribution,
    label_suffix,
)
from quantnb.errors import ConfigError, DataError
from tests.classifier._builders import T0, bars

SHORT, LONG = -0.004, 0.008


def minutes_of(df: pl.DataFrame) -> list[int]:
    return [int((t - T0).total_seconds() // 60) for t in df["ts"].to_list()]


@pytest.mark.parametrize(("p0", "p1", "expected"), [
    (100.0, 100.8, BUY),       # exactly +0.8 %
    (100.0, 100.79, NEUTRAL),  # just below the long threshold
    (100.0, 99.6, SELL),       # exactly -0.4 %
    (100.0, 99.61, NEUTRAL),   # just above the short threshold
    (100.0, 100.0, NEUTRAL),
    (37000.0, 37296.0, BUY),   # exactly +0.8 % at a BTC price level
    (37000.0, 36852.0, SELL),  # exactly -0.4 %
    (250.0, 255.0, BUY),
    (250.0, 240.0, SELL),
])
def test_threshold_boundaries_are_inclusive(p0: float, p1: float, expected: int) -> None:
    out = label_bars(bars([p0, p1]), 1, SHORT, LONG)
    assert out.height == 1
    assert out["label"][0] == expected
    assert out["fwd_return"][0] == pytest.approx(p1 / p0 - 1.0, abs=1e-15)
    assert out.schema["label"] == pl.Int8 and out.schema["fwd_return"] == pl.Float64


def test_label_compares_the_price_lookahead_minutes_later() -> None:
    closes = [100.0, 101.0, 100.0, 99.0, 100.0, 100.5]
    out = label_bars(bars(closes), 3, SHORT, LONG)
    # row0: 99/100 -> SELL; row1: 100/101 -> -0.99 % SELL; row2: 100.5/100 -> +0.5 % NEUTRAL
    assert out["label"].to_list() == [SELL, SELL, NEUTRAL]
    assert out["fwd_return"].to_list() == pytest.approx([-0.01, 100 / 101 - 1, 0.005])


def test_last_lookahead_rows_have_no_label() -> None:
    out = label_bars(bars([100.0 + i for i in range(10)]), 3, SHORT, LONG)
    assert minutes_of(out) == list(range(7))


def test_window_across_a_missing_minute_is_excluded() -> None:
    df = bars([100.0] * 9, minutes=[0, 1, 2, 3, 5, 6, 7, 8, 9])  # minute 4 missing
    out = label_bars(df, 2, SHORT, LONG)
    # minutes 2 and 3 would need minute 4 or bridge it; 8 and 9 lack a future
    assert minutes_of(out) == [0, 1, 5, 6, 7]


def test_window_over_a_flagged_gap_is_excluded() -> None:
    gap = [False, False, False, False, True, False, False, False]
    out = label_bars(bars([100.0] * 8, gap_before=gap), 2, SHORT, LONG)
    # windows (t, t+2] of t=2 and t=3 hold minute 4, which follows a gap in the feed
    assert minutes_of(out) == [0, 1, 4, 5]
    assert out["gap_before"].to_list() == [False, False, True, False]


def test_invalid_prices_are_never_labelled() -> None:
    out = label_bars(bars([100.0, 0.0, 101.0, None, 100.0, 100.0]), 1, SHORT, LONG)  # type: ignore[list-item]
    assert minutes_of(out) == [4]  # 0->1 zero, 1 from zero, 2->3 null, 3 null


def test_price_col_selects_the_price() -> None:
    df = bars([100.0, 100.0], micro_price_close=[100.0, 101.0])
    assert label_bars(df, 1, SHORT, LONG)["label"][0] == NEUTRAL
    assert label_bars(df, 1, SHORT, LONG, price_col="micro_price_close")["label"][0] == BUY


def test_empty_input_gives_empty_labelled_frame() -> None:
    out = label_bars(bars([]), 5, SHORT, LONG)
    assert out.height == 0
    assert out.schema["label"] == pl.Int8 and "fwd_return" in out.columns


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"lookahead_min": 0}, "lookahead_min"),
    ({"lookahead_min": 1.5}, "lookahead_min"),
    ({"lookahead_min": True}, "lookahead_min"),
    ({"threshold_short_frac": 0.004}, "threshold_short_frac"),
    ({"threshold_short_frac": float("nan")}, "threshold_short_frac"),
    ({"threshold_long_frac": -0.008}, "threshold_long_frac"),
    ({"threshold_long_frac": 0.0}, "threshold_long_frac"),
    ({"threshold_long_frac": 1.5}, "threshold_long_frac"),
    ({"price_col": "mid_close"}, "price_col"),
])
def test_bad_parameters_raise_config_error_naming_the_field(kwargs: dict, field: str) -> None:
    params = {"lookahead_min": 5, "threshold_short_frac": SHORT, "threshold_long_frac": LONG, **kwargs}
    with pytest.raises(ConfigError, match=field):
        label_bars(bars([100.0] * 10), **params)


def test_unsorted_duplicate_or_off_grid_timestamps_raise_data_error() -> None:
    with pytest.raises(DataError, match="row 2.*sort"):
        label_bars(bars([1.0, 1.0, 1.0], minutes=[0, 2, 1]), 1, SHORT, LONG)
    with pytest.raises(DataError, match="row 1"):
        label_bars(bars([1.0, 1.0], minutes=[3, 3]), 1, SHORT, LONG)
    off = bars([1.0, 1.0]).with_columns(pl.col("ts") + pl.duration(seconds=30))
    with pytest.raises(DataError, match="minute grid"):
        label_bars(off, 1, SHORT, LONG)
    with pytest.raises(DataError, match="Datetime"):
        label_bars(bars([1.0]).with_columns(pl.col("ts").cast(pl.String)), 1, SHORT, LONG)


@pytest.mark.parametrize(("args", "expected"), [
    ((60, -0.004, 0.008), "SELL_0004_BUY_0008_1h"),
    ((30, -0.004, 0.008), "SELL_0004_BUY_0008_30m"),
    ((90, -0.002, 0.002), "SELL_0002_BUY_0002_90m"),
    ((1440, -0.01, 0.02), "SELL_0010_BUY_0020_1d"),
    ((240, -0.0125, 0.1), "SELL_0012p5_BUY_0100_4h"),
    ((5, -0.00045, 0.0008), "SELL_0000p45_BUY_0000p8_5m"),
])
def test_label_suffix(args: tuple, expected: str) -> None:
    assert label_suffix(*args) == expected


def test_label_suffix_tells_close_thresholds_apart() -> None:
    fracs = [0.004, 0.0041, 0.00401, 0.04, 0.0004]
    assert len({label_suffix(60, -0.004, f) for f in fracs}) == len(fracs)
    with pytest.raises(ConfigError, match="threshold_short_frac"):
        label_suffix(60, 0.004, 0.008)


def test_distribution_counts_and_format() -> None:
    df = pl.DataFrame({"label": pl.Series([SELL, NEUTRAL, NEUTRAL, BUY], dtype=pl.Int8)})
    assert label_counts(df) == {"SELL": 1, "NEUTRAL": 2, "BUY": 1}
    dist = label_distribution(df)
    assert dist == {"SELL": 0.25, "NEUTRAL": 0.5, "BUY": 0.25}
    assert format_distribution(dist) == "SELL: 25.0% | NEU: 50.0% | BUY: 25.0%"
    total = label_distribution({"SELL": 1, "NEUTRAL": 6, "BUY": 1})  # counts summed over files
    assert format_distribution(total) == "SELL: 12.5% | NEU: 75.0% | BUY: 12.5%"
    assert label_distribution(df.head(0)) == {"SELL": 0.0, "NEUTRAL": 0.0, "BUY": 0.0}


def test_real_month_is_labelled_except_the_last_lookahead(btc_bars: pl.DataFrame) -> None:
    out = label_bars(btc_bars, 60, SHORT, LONG)
    assert out.height == btc_bars.height - 60  # the sample has no missing minute
    assert out["ts"].max() == btc_bars["ts"][-61]
    dist = label_distribution(out)
    assert all(0.0 < v < 1.0 for v in dist.values())
    closes = btc_bars["close"].to_numpy()
    assert out["fwd_return"].to_numpy() == pytest.approx(closes[60:] / closes[:-60] - 1.0)


steps = st.lists(st.integers(1, 3), min_size=0, max_size=40)  # minute steps: 1 = contiguous, >1 = gap


@settings(max_examples=150, deadline=None)
@given(steps=steps, lookahead=st.integers(1, 6), data=st.data())
@example(steps=[], lookahead=3, data=None)
def test_changing_a_price_outside_a_row_window_never_changes_its_label(steps: list[int], lookahead: int,
                                                                        data: st.DataObject | None) -> None:
    minutes = [sum(steps[:i]) for i in range(len(steps))]
    if data is None:  # explicit empty-input example
        closes: list[float] = []
    else:
        closes = data.draw(st.lists(st.floats(90.0, 110.0), min_size=len(minutes), max_size=len(minutes)))
    base = label_bars(bars(closes, minutes), lookahead, -0.01, 0.01)
    present = set(minutes)
    complete = [m for m in minutes if all(m + j in present for j in range(lookahead + 1))]
    assert minutes_of(base) == complete  # labelled exactly when the whole future window exists
    if not closes or data is None:
        return
    k = data.draw(st.integers(0, len(closes) - 1))
    changed = list(closes)
    changed[k] = data.draw(st.floats(50.0, 200.0))
    after = label_bars(bars(changed, minutes), lookahead, -0.01, 0.01)
    mk = minutes[k]
    keep = ~((pl.col("m") <= mk) & (pl.col("m") + lookahead >= mk))  # rows whose window [t, t+L] omits mk
    a = base.with_columns(m=pl.Series(minutes_of(base))).filter(keep).select("m", "label", "fwd_return")
    b = after.with_columns(m=pl.Series(minutes_of(after))).filter(keep).select("m", "label", "fwd_return")
    assert a.equals(b)
