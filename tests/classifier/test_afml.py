"""AFML labels and weights: triple barrier against a slow reference, CUSUM, uniqueness by hand, gaps."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from quantnb.classifier import label_bars, label_events, sequential_bootstrap
from quantnb.classifier._afml import (
    BARRIER_PROFIT_TAKE,
    BARRIER_STOP_LOSS,
    BARRIER_VERTICAL,
    cusum_events,
    ewm_volatility,
    sample_weights,
    triple_barrier_labels,
)
from quantnb.errors import ConfigError
from tests.classifier._builders import T0, bars

MINUTE = dt.timedelta(minutes=1)


def with_gaps(df: pl.DataFrame) -> pl.DataFrame:
    """The month with three holes in the feed: minutes removed, and one flagged gap without a missing minute."""
    idx = np.arange(df.height)
    holes = ((idx >= 5000) & (idx < 5007)) | ((idx >= 20_000) & (idx < 20_001)) | ((idx >= 33_333) & (idx < 33_400))
    flagged = np.zeros(df.height, dtype=bool)
    flagged[11_111] = True
    return df.with_columns(gap_before=pl.Series(flagged)).filter(pl.Series(~holes))


def reference_volatility(minutes: list[int], gap: list[bool], closes: list[float], span: int) -> list[float]:
    """RiskMetrics EWM volatility, one bar at a time."""
    a, var, seen, out = 2.0 / (span + 1), None, 0, []
    for i, p in enumerate(closes):
        contiguous = i > 0 and minutes[i] == minutes[i - 1] + 1 and not gap[i]
        if contiguous and p > 0 and closes[i - 1] > 0:
            r2 = math.log(p / closes[i - 1]) ** 2
            var = r2 if var is None else (1 - a) * var + a * r2
            seen += 1
        out.append(math.sqrt(var) if var is not None and seen >= span else math.nan)
    return out


def reference_triple_barrier(df: pl.DataFrame, horizon: int, pt: float, sl: float, span: int,
                             events: np.ndarray | None = None) -> list[tuple]:
    """Slow, obviously correct triple barrier: walk each bar's path minute by minute."""
    minutes = [int((t - df["ts"][0]).total_seconds() // 60) for t in df["ts"].to_list()]
    gap = df["gap_before"].to_list() if "gap_before" in df.columns else [False] * df.height
    closes = df["close"].to_list()
    vol = reference_volatility(minutes, gap, closes, span)
    out = []
    for i, p0 in enumerate(closes):
        if math.isnan(vol[i]) or vol[i] <= 0 or (events is not None and not events[i]):
            continue
        width = vol[i] * math.sqrt(horizon)
        up, down = pt * width, -sl * width
        for j in range(i + 1, i + horizon + 1):
            if j >= len(closes) or minutes[j] != minutes[j - 1] + 1 or gap[j]:
                break  # the path reaches a gap or the end of the data before a barrier: no label
            ret = closes[j] / p0 - 1.0
            if ret >= up - 1e-12:
                out.append((i, j, 2, BARRIER_PROFIT_TAKE, ret))
                break
            if ret <= down + 1e-12:
                out.append((i, j, 0, BARRIER_STOP_LOSS, ret))
                break
            if j == i + horizon:
                out.append((i, j, 1, BARRIER_VERTICAL, ret))
    return out


def test_ewm_volatility_matches_the_recursion_on_the_month(btc_bars: pl.DataFrame) -> None:
    df = with_gaps(btc_bars.head(15_000))
    minutes = [int((t - df["ts"][0]).total_seconds() // 60) for t in df["ts"].to_list()]
    ref = np.array(reference_volatility(minutes, df["gap_before"].to_list(), df["close"].to_list(), 60))
    got = ewm_volatility(df, 60)
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    assert got[~np.isnan(got)] == pytest.approx(ref[~np.isnan(ref)], rel=1e-9)


@pytest.mark.parametrize(("n_rows", "horizon", "pt", "sl", "cusum"), [
    (12_000, 60, 1.0, 1.0, None),
    (None, 90, 1.0, 2.0, 0.003),  # few events: the sparse walk
    pytest.param(None, 60, 1.0, 1.0, None, marks=pytest.mark.slow),
    pytest.param(None, 240, 2.0, 0.5, None, marks=pytest.mark.slow),
])
def test_triple_barrier_equals_the_slow_reference_on_the_bundled_month(btc_bars: pl.DataFrame, n_rows: int | None,
                                                                       horizon: int, pt: float, sl: float,
                                                                       cusum: float | None) -> None:
    df = with_gaps(btc_bars if n_rows is None else btc_bars.head(n_rows))
    events = None if cusum is None else cusum_events(df, cusum)
    ref = reference_triple_barrier(df, horizon, pt, sl, 60, events)
    got = triple_barrier_labels(df, horizon, pt, sl, vol_span_min=60, events=events)
    ts = df["ts"]
    assert got["ts"].to_list() == [ts[i] for i, *_ in ref]
    assert got["t1"].to_list() == [ts[j] for _, j, *_ in ref]
    assert got["label"].to_list() == [lab for _, _, lab, _, _ in ref]
    assert got["barrier"].to_list() == [b for *_, b, _ in ref]
    assert got["fwd_return"].to_numpy() == pytest.approx([r for *_, r in ref], abs=1e-15)
    assert {BARRIER_PROFIT_TAKE, BARRIER_STOP_LOSS, BARRIER_VERTICAL} <= set(got["barrier"].to_list())


def assert_no_label_past_its_vertical_barrier_or_across_a_gap(df: pl.DataFrame, out: pl.DataFrame,
                                                              horizon: int) -> None:
    assert out.schema["t1"] == df.schema["ts"]  # UTC datetime, like ts
    span = (out["t1"] - out["ts"]).dt.total_minutes().to_numpy()
    assert (span >= 1).all() and (span <= horizon).all()
    pos = {t: i for i, t in enumerate(df["ts"].to_list())}
    gap = df["gap_before"].to_list() if "gap_before" in df.columns else [False] * df.height
    for t0, t1 in zip(out["ts"].to_list(), out["t1"].to_list(), strict=True):
        i, j = pos[t0], pos[t1]  # t1 is a bar of the data
        assert j - i == (t1 - t0) // MINUTE, f"label at {t0} spans missing minutes up to {t1}"
        assert not any(gap[i + 1:j + 1]), f"label at {t0} spans a flagged gap up to {t1}"


@pytest.mark.parametrize("kwargs", [
    {"method": "triple_barrier", "max_holding_min": 60},
    {"method": "triple_barrier", "max_holding_min": 120, "profit_take_mult": 3.0, "stop_loss_mult": 3.0},
    {"method": "triple_barrier", "max_holding_min": 60, "cusum_threshold": 0.004},
    {"method": "fixed_horizon", "lookahead_min": 60},
    {"method": "fixed_horizon", "lookahead_min": 30, "cusum_threshold": 0.003},
])
def test_no_label_ends_past_its_vertical_barrier_or_spans_a_gap(btc_bars: pl.DataFrame, kwargs: dict) -> None:
    df = with_gaps(btc_bars)
    out = label_events(df, **kwargs)
    assert out.height > 500
    horizon = kwargs.get("max_holding_min", kwargs.get("lookahead_min"))
    assert_no_label_past_its_vertical_barrier_or_across_a_gap(df, out, horizon)
    u = out["uniqueness"].to_numpy()
    assert (u > 0).all() and (u <= 1 + 1e-12).all()
    assert (out["return_weight"].to_numpy() >= 0).all()


def test_fixed_horizon_keeps_label_bars_output_and_adds_t1(btc_bars: pl.DataFrame) -> None:
    df = with_gaps(btc_bars)
    base = label_bars(df, 60, -0.004, 0.008)
    out = label_events(df, "fixed_horizon", lookahead_min=60, threshold_short_frac=-0.004, threshold_long_frac=0.008)
    assert out.select(base.columns).equals(base)  # today's labels, unchanged
    assert (out["t1"] - out["ts"] == dt.timedelta(minutes=60)).all()
    # the figure: each label overlaps about 60 others, average uniqueness 0.0167
    assert out["uniqueness"].mean() == pytest.approx(1 / 60, rel=0.01)


def test_uniqueness_and_return_weights_equal_a_hand_count() -> None:
    closes = [100.0, 101.0, 99.0, 100.0, 102.0, 50.0, 50.5, 51.0]
    df = bars(closes, minutes=[0, 1, 2, 3, 4, 10, 11, 12])  # a gap before minute 10
    out = label_events(df, "fixed_horizon", lookahead_min=2, threshold_short_frac=-0.01, threshold_long_frac=0.01)
    # labels start at minutes 0, 1, 2 (spans (0,2], (1,3], (2,4]) and 10 (span (10,12]); none bridges the gap
    assert [int((t - T0).total_seconds() // 60) for t in out["ts"].to_list()] == [0, 1, 2, 10]
    # concurrency: minute 1 -> 1, 2 -> 2, 3 -> 2, 4 -> 1; 11 -> 1, 12 -> 1
    assert out["uniqueness"].to_list() == pytest.approx([(1 + 1 / 2) / 2, (1 / 2 + 1 / 2) / 2, (1 / 2 + 1) / 2, 1.0])
    r = {m: math.log(b / a) for m, a, b in [(1, 100, 101), (2, 101, 99), (3, 99, 100), (4, 100, 102),
                                             (11, 50, 50.5), (12, 50.5, 51)]}
    expected = [abs(r[1] + r[2] / 2), abs(r[2] / 2 + r[3] / 2), abs(r[3] / 2 + r[4]), abs(r[11] + r[12])]
    assert out["return_weight"].to_list() == pytest.approx(expected, rel=1e-12)


def test_triple_barrier_labels_by_the_first_touch_by_hand() -> None:
    # 4 warm-up minutes of +-1 % moves give a known volatility, then three paths
    warm = [100.0, 101.0, 100.0, 101.0, 100.0]
    df = bars(warm + [100.5, 103.0, 90.0])
    vol = ewm_volatility(df, 4)
    r = [math.log(b / a) for a, b in zip(warm, warm[1:], strict=False)]
    var = r[0] ** 2
    for x in r[1:]:
        var = 0.6 * var + 0.4 * x ** 2
    assert vol[4] == pytest.approx(math.sqrt(var), rel=1e-12) and math.isnan(vol[3])
    out = triple_barrier_labels(df, max_holding_min=3, profit_take_mult=1.0, stop_loss_mult=1.0, vol_span_min=4)
    # bar 4 (price 100, barriers about +-1.7 %): 100.5 no touch, 103 above -> BUY at minute 6
    first = out.row(0, named=True)
    assert first["ts"] == T0 + 4 * MINUTE and first["t1"] == T0 + 6 * MINUTE
    assert first["label"] == 2 and first["barrier"] == BARRIER_PROFIT_TAKE
    assert first["fwd_return"] == pytest.approx(0.03)


def test_cusum_filter_by_hand() -> None:
    # log returns +0.006, +0.006 (s+ = 0.012 > 0.01: event), -0.004, -0.007 (s- = -0.011: event), +0.002
    logp = np.cumsum([0.0, 0.006, 0.006, -0.004, -0.007, 0.002]) + math.log(100.0)
    df = bars(list(np.exp(logp)))
    assert cusum_events(df, 0.01).tolist() == [False, False, True, False, True, False]
    # a gap resets the sums: the same path with a hole before the second return has no first event
    holed = bars(list(np.exp(logp)), minutes=[0, 1, 3, 4, 5, 6])
    assert cusum_events(holed, 0.01).tolist() == [False, False, False, False, True, False]


@pytest.mark.parametrize(("call", "field"), [
    (lambda df: triple_barrier_labels(df, 0), "max_holding_min"),
    (lambda df: triple_barrier_labels(df, 60, profit_take_mult=0.0), "profit_take_mult"),
    (lambda df: triple_barrier_labels(df, 60, stop_loss_mult=float("nan")), "stop_loss_mult"),
    (lambda df: triple_barrier_labels(df, 60, vol_span_min=True), "vol_span_min"),
    (lambda df: cusum_events(df, -0.01), "cusum_threshold"),
    (lambda df: label_events(df, "quantile"), "method"),
    (lambda df: sample_weights(df, df), "t1"),
])
def test_bad_parameters_name_the_field(call, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        call(bars([100.0] * 5))


steps = st.lists(st.integers(1, 3), min_size=0, max_size=60)  # minute steps: 1 = contiguous, >1 = gap


@settings(max_examples=120, deadline=None)
@given(steps=steps, horizon=st.integers(1, 8), method=st.sampled_from(["fixed_horizon", "triple_barrier"]),
       cusum=st.one_of(st.none(), st.floats(0.001, 0.05)), data=st.data())
@example(steps=[], horizon=3, method="triple_barrier", cusum=None, data=None)
@example(steps=[], horizon=3, method="fixed_horizon", cusum=0.01, data=None)
def test_label_functions_on_random_paths(steps: list[int], horizon: int, method: str, cusum: float | None,
                                         data: st.DataObject | None) -> None:
    minutes = [sum(steps[:i]) for i in range(len(steps))]
    if data is None:  # explicit empty-input example
        closes: list[float] = []
    else:
        closes = data.draw(st.lists(st.floats(90.0, 110.0), min_size=len(minutes), max_size=len(minutes)))
    df = bars(closes, minutes)
    out = label_events(df, method, lookahead_min=horizon, threshold_short_frac=-0.01, threshold_long_frac=0.01,
                       max_holding_min=horizon, vol_span_min=2, cusum_threshold=cusum)
    assert {"ts", "label", "fwd_return", "t1", "uniqueness", "return_weight"} <= set(out.columns)
    assert out.schema["t1"] == pl.Datetime("us", "UTC")
    if not closes:
        assert out.height == 0 and cusum_events(df, 0.01).shape == (0,) and ewm_volatility(df, 2).shape == (0,)
        return
    assert_no_label_past_its_vertical_barrier_or_across_a_gap(df, out, horizon)
    u = out["uniqueness"].to_numpy()
    assert ((u > 0) & (u <= 1 + 1e-12)).all()
    if method == "triple_barrier":
        touched = out.filter(pl.col("barrier") != BARRIER_VERTICAL)
        assert ((touched["label"] == 2) == (touched["barrier"] == BARRIER_PROFIT_TAKE)).all()
        assert (out.filter(pl.col("barrier") == BARRIER_VERTICAL)["t1"] - out.filter(
            pl.col("barrier") == BARRIER_VERTICAL)["ts"] == dt.timedelta(minutes=horizon)).all()


def reference_sequential_bootstrap(spans: list[tuple[int, int]], n_draws: int, seed: int) -> list[int]:
    """AFML snippet 4.5, brute force: recount every label's uniqueness against all draws at each step."""
    rng = np.random.default_rng(seed)
    drawn: list[int] = []
    for _ in range(n_draws):
        u = []
        for s, e in spans:
            u.append(sum(1.0 / (1 + sum(1 for d in drawn if spans[d][0] < t <= spans[d][1]))
                         for t in range(s + 1, e + 1)) / (e - s))
        cum = np.cumsum(u)
        drawn.append(min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(spans) - 1))
    return drawn


def test_sequential_bootstrap_equals_the_brute_force_reference() -> None:
    spans = [(0, 3), (1, 4), (2, 3), (6, 9), (7, 8), (0, 9), (4, 5)]
    df = pl.DataFrame({"ts": [T0 + s * MINUTE for s, _ in spans], "t1": [T0 + e * MINUTE for _, e in spans]})
    for seed in range(5):
        assert sequential_bootstrap(df, 20, seed).tolist() == reference_sequential_bootstrap(spans, 20, seed)
    assert sequential_bootstrap(df.head(0)).shape == (0,)
    with pytest.raises(ConfigError, match="n_draws"):
        sequential_bootstrap(df, 0)


def test_sequential_bootstrap_draws_more_unique_samples_than_a_standard_one(btc_bars: pl.DataFrame) -> None:
    labels = label_events(btc_bars.head(3000), "fixed_horizon", lookahead_min=60)

    def mean_uniqueness(rows: np.ndarray) -> float:  # AFML 4.5.4: of the sample's labels among themselves
        drawn = labels[rows]
        conc = np.zeros(4000)
        start = ((drawn["ts"] - btc_bars["ts"][0]).dt.total_minutes()).to_numpy()
        for s in start:
            conc[s + 1:s + 61] += 1
        return float(np.mean([np.mean(1 / conc[s + 1:s + 61]) for s in start]))

    seq = [mean_uniqueness(sequential_bootstrap(labels, 500, seed)) for seed in range(3)]
    std = [mean_uniqueness(np.random.default_rng(seed).integers(0, labels.height, 500)) for seed in range(3)]
    assert min(seq) > max(std)


@settings(max_examples=100, deadline=None)
@given(spans=st.lists(st.tuples(st.integers(0, 30), st.integers(1, 8)), min_size=0, max_size=25))
@example(spans=[])
def test_uniqueness_equals_a_brute_force_count_for_any_spans(spans: list[tuple[int, int]]) -> None:
    closes = [100.0 + (i % 7) - 3 for i in range(40)]
    df = bars(closes)
    utc = pl.Datetime("us", "UTC")
    labelled = pl.DataFrame({"ts": pl.Series([T0 + s * MINUTE for s, _ in spans], dtype=utc),
                             "t1": pl.Series([T0 + (s + n) * MINUTE for s, n in spans], dtype=utc)})
    out = sample_weights(labelled, df)
    assert out.height == len(spans)
    for (s, n), u, w in zip(spans, out["uniqueness"].to_list(), out["return_weight"].to_list(), strict=True):
        conc = [sum(1 for s2, n2 in spans if s2 < t <= s2 + n2) for t in range(s + 1, s + n + 1)]
        assert u == pytest.approx(sum(1 / c for c in conc) / n, rel=1e-12)
        assert 0 < u <= 1
        ret = sum(math.log(closes[t] / closes[t - 1]) / c for t, c in zip(range(s + 1, s + n + 1), conc, strict=True))
        assert w == pytest.approx(abs(ret), rel=1e-9, abs=1e-15)
