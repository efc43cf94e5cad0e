"""The bar rule set: the frame judge (ETL) and the one-bar judge (trader) are one definition; one empty-column rule."""

from __future__ import annotations

import collections
import math
import random

import polars as pl
import pytest

from quantnb.data import BAR_RULES, QualityReport, check_bar, data_columns, read_bars
from quantnb.data._bar_rules import judge_bars
from quantnb.errors import DataError

_ODD = [math.nan, math.inf, -math.inf, None, 0.0, -3.0]


def _random_bars(seed: int, n: int = 400) -> list[tuple]:
    """Minute bars with every defect the rules know, at random: odd values, copies, steps back and holes."""
    rng = random.Random(seed)
    rows, minute = [], 0
    for line in range(2, n + 2):
        minute += rng.choice([1] * 12 + [0, -2, 3])
        o, c = 100 + rng.uniform(-1, 1), 100 + rng.uniform(-1, 1)
        h, lo = max(o, c) + rng.uniform(-0.3, 1), min(o, c) - rng.uniform(-0.3, 1)
        v = rng.choice([rng.uniform(0, 5)] * 8 + [0.0, None])
        prices = [o, h, lo, c]
        if rng.random() < 0.08:
            prices[rng.randrange(4)] = rng.choice(_ODD)
        if rng.random() < 0.05:
            v = rng.choice(_ODD)
        if rng.random() < 0.05:  # a flat minute
            prices, v = [o, o, o, o], 0.0
        rows.append((line, minute * 60_000, *prices, v))
    return rows


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_frame_judge_and_the_one_bar_judge_agree_on_every_bar(seed):
    rows = _random_bars(seed)
    frame = pl.DataFrame(rows, schema={"line": pl.Int64, "ts": pl.Int64, "open": pl.Float64, "high": pl.Float64,
                                       "low": pl.Float64, "close": pl.Float64, "volume": pl.Float64}, orient="row")
    report = QualityReport(path="x.csv", source="ohlcv_csv")
    kept = judge_bars(frame, report, line="line")

    counts, accepted, prev = collections.Counter(), [], None
    for line, ts, o, h, lo, c, v in rows:
        findings = check_bar(ts, o, h, lo, c, v, prev_ms=prev)
        counts.update(f.rule.counter for f in findings)
        if not findings or findings[0].rule.verdict == "flag":
            accepted.append(line)
            prev = ts
    assert kept["line"].to_list() == accepted
    assert {k: getattr(report, k) for k in counts} == dict(counts)
    assert sum(report.defects.values()) == sum(counts.values())
    assert len(counts) >= 8  # the seeds exercise (almost) every rule, so the comparison means something


def test_every_rule_names_a_quality_counter_and_has_one_verdict():
    report = QualityReport(path="x", source="ohlcv_csv")
    for rule in BAR_RULES:
        assert hasattr(report, rule.counter) and rule.verdict in ("reject", "flag") and rule.fix


def test_a_column_holds_data_when_one_value_is_finite_or_not_null():
    frame = pl.DataFrame({"nulls": [None, None], "nans": [math.nan, None], "infs": [math.inf, -math.inf],
                          "one": [None, 2.0], "text": [None, None], "label": ["a", None], "n": [None, 0]},
                         schema_overrides={"nulls": pl.Float64, "text": pl.String, "n": pl.Int64})
    assert data_columns(frame) == ["one", "label", "n"]
    assert data_columns(frame.clear()) == frame.columns


def _bars(n: int = 5) -> pl.DataFrame:
    ts = pl.datetime_range(pl.datetime(2024, 1, 2, time_zone="UTC"), pl.datetime(2024, 1, 2, 0, n - 1,
                           time_zone="UTC"), "1m", eager=True, time_unit="us")
    return pl.DataFrame({"ts": ts, "open": [100.0] * n, "high": [101.0] * n, "low": [99.0] * n,
                         "close": [100.5] * n, "volume": [1.0] * n, "spread_bps_mean": [math.nan] * n})


def test_read_bars_takes_a_frame_refuses_a_repeated_minute_and_drops_columns_without_data():
    bars = _bars()
    assert read_bars(bars.reverse()).columns == ["ts", "open", "high", "low", "close", "volume"]  # NaN-only: empty
    with pytest.raises(DataError, match=r"bars <DataFrame>: row 3: .*sort the bars by ts and drop duplicate"):
        read_bars(pl.concat([bars.head(3), bars.slice(2)]))
    with pytest.raises(DataError, match=r"price column\(s\) \['close'\] missing or empty"):
        read_bars(bars.with_columns(close=None))
