"""The trader's guard and the ETL judge every bad bar alike: same rule, same verdict, same words."""

from __future__ import annotations

import csv
import math
import re

import pytest

from quantnb.agent import FillModel
from quantnb.data import BAR_RULES, ingest_file
from quantnb.live import BadBarError, PaperBroker, ReplayProvider, RiskLimits, Trader
from quantnb.live._guard import validate_bar
from quantnb.live._types import Bar
from tests.live._helpers import WARMUP, WINDOW, make_agent, sample_bars

T0_MS = 1_704_153_600_000  # 2024-01-02 00:00 UTC
VERDICT = {r.name: str(r.verdict) for r in BAR_RULES}


def ok(minute: int) -> tuple[int, float, float, float, float, float]:
    return (minute, 100.0, 101.0, 99.0, 100.5, 10.0)


# (bars as (minute, open, high, low, close, volume), the rules broken as (bar index, rule))
CASES = {
    "high_below_close": ([ok(0), ok(1), (2, 100.0, 100.5, 99.0, 101.0, 10.0), ok(3)],
                         [(2, "high_below_open_close"), (3, "gap")]),
    "low_above_open": ([ok(0), ok(1), (2, 100.0, 101.0, 100.2, 100.5, 10.0), ok(3)],
                       [(2, "low_above_open_close"), (3, "gap")]),
    "nan_close": ([ok(0), ok(1), (2, 100.0, 101.0, 99.0, math.nan, 10.0), ok(3)],
                  [(2, "price_not_finite"), (3, "gap")]),
    "inf_high": ([ok(0), (1, 100.0, math.inf, 99.0, 100.5, 10.0), ok(2)], [(1, "price_not_finite"), (2, "gap")]),
    "zero_low": ([ok(0), (1, 100.0, 101.0, 0.0, 100.5, 10.0), ok(2)], [(1, "price_not_positive"), (2, "gap")]),
    "negative_open": ([ok(0), (1, -100.0, 101.0, 99.0, 100.5, 10.0)], [(1, "price_not_positive")]),
    "nan_volume": ([ok(0), (1, 100.0, 101.0, 99.0, 100.5, math.nan), ok(2)], [(1, "volume_not_finite"), (2, "gap")]),
    "negative_volume": ([ok(0), (1, 100.0, 101.0, 99.0, 100.5, -1.0), ok(2)], [(1, "volume_negative"), (2, "gap")]),
    "zero_volume_price_moved": ([ok(0), (1, 100.0, 101.0, 99.0, 100.5, 0.0), ok(2)], [(1, "volume_zero")]),
    "zero_volume_flat_minute": ([ok(0), (1, 100.0, 100.0, 100.0, 100.0, 0.0), ok(2)], []),
    "duplicate_minute": ([ok(0), ok(1), (1, 100.0, 102.0, 98.0, 101.0, 20.0), ok(2)], [(2, "duplicate_minute")]),
    "out_of_order": ([ok(0), ok(1), ok(3), ok(2), ok(4)], [(2, "gap"), (3, "out_of_order")]),
    "gap": ([ok(0), ok(1), ok(5), ok(6)], [(2, "gap")]),
}


def _write(tmp_path, fmt: str, bars) -> tuple:
    """Write the bars as the ETL's OHLCV CSV or a Binance kline CSV; return the path."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    if fmt == "ohlcv":
        path = tmp_path / "TEST_20240102_1m.csv"
        header = ["timestamp", "open", "high", "low", "close", "volume"]
        rows = [[f"2024-01-02 00:{m:02d}:00", *map(repr, vals)] for m, *vals in bars]
    else:
        path = tmp_path / "BTCUSDT-1m-2024-01-02.csv"
        header = ["open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "count",
                  "taker_buy_volume", "taker_buy_quote_volume", "ignore"]
        rows = [[T0_MS + m * 60_000, *map(repr, vals), T0_MS + m * 60_000 + 59_999, "1000.0", "5", "4.0", "400.0", "0"]
                for m, *vals in bars]
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])
    return path


def _guard(bars) -> tuple[list[tuple[int, str]], list[tuple[int, float]], dict[int, str]]:
    """Feed the bars to the trader's guard in order: the rules it reports, the bars it lets through, its messages."""
    found, passed, messages, prev = [], [], {}, None
    for i, (m, o, h, lo, c, v) in enumerate(bars):
        bar = Bar(T0_MS + m * 60_000, o, h, lo, c, v)
        try:
            flags = validate_bar(bar, prev_ms=prev)
        except BadBarError as err:
            found.append((i, err.rule))
            messages[i] = str(err).split("; the trader does not act")[0]
            assert err.bar_ts == f"2024-01-02T00:{m:02d}:00+00:00" and err.field in str(err)
            continue
        found += [(i, f.rule.name) for f in flags]
        passed.append((m, c))
        prev = bar.open_time_ms
    return found, passed, messages


@pytest.mark.parametrize("fmt", ["ohlcv", "klines"])
@pytest.mark.parametrize("case", list(CASES))
def test_etl_and_trader_guard_give_each_bad_bar_the_same_verdict(tmp_path, caplog_loguru, case, fmt):
    bars, expected = CASES[case]
    path = _write(tmp_path / fmt, fmt, bars)
    result = ingest_file(path)
    etl_found = sorted((e["line"] - 2, m[1]) for e in result.quality.examples  # a conflict note is no verdict
                       if (m := re.search(r"\[(\w+)\]$", e["message"])) and m[1] in VERDICT)
    etl_passed = [(int(t.timestamp() - T0_MS / 1000) // 60, c) for t, c in result.bars.select("ts", "close").rows()]
    guard_found, guard_passed, guard_messages = _guard(bars)

    assert etl_found == sorted(guard_found) == sorted(expected)
    assert etl_passed == guard_passed  # the same bars survive, so research and live see the same series
    assert len(guard_passed) == len(bars) - sum(VERDICT[rule] == "reject" for _, rule in expected)
    for i, message in guard_messages.items():  # the ETL words a rejection as the guard does, with file and line
        assert any(f"{path} line {i + 2}: {message}" in line for line in caplog_loguru), (message, caplog_loguru)


def test_every_rule_has_a_case_and_one_verdict():
    covered = {rule for _, found in CASES.values() for _, rule in found}
    assert covered == set(VERDICT) and set(VERDICT.values()) == {"reject", "flag"}


@pytest.mark.parametrize(("field", "value", "rule"), [
    ("close", math.nan, "price_not_finite"), ("open", math.inf, "price_not_finite"), ("low", 0.0, "price_not_positive"),
    ("volume", math.nan, "volume_not_finite"), ("volume", -1.0, "volume_negative"),
    ("high", 90.0, "high_below_open_close"), ("close", 150.0, "high_below_open_close"),
    ("open", 94.0, "low_above_open_close"),
])
def test_a_bad_candle_is_refused_naming_the_bar_the_field_its_value_and_the_rule(field, value, rule):
    good = Bar(1_640_995_260_000, open=100.0, high=120.0, low=95.0, close=110.0, volume=3.0)
    assert validate_bar(good) == []
    bad = Bar(**{**{k: getattr(good, k) for k in ("open_time_ms", "open", "high", "low", "close", "volume")},
                 field: value})
    with pytest.raises(BadBarError, match=r"bar 2022-01-01T00:01:00\+00:00 field \w+=") as info:
        validate_bar(bad)
    assert info.value.rule == rule and info.value.bar_ts == "2022-01-01T00:01:00+00:00"
    assert f"{info.value.field}=" in str(info.value) and f"[{rule}]" in str(info.value)


def test_a_duplicated_candle_in_a_replay_is_refused_and_never_reaches_the_features(tmp_path, caplog_loguru):
    start = WARMUP + WINDOW - 2
    bars = sample_bars(start + 12)
    k = start + 4
    doubled = bars.head(k + 1).vstack(bars.slice(k, 1)).vstack(bars.slice(k + 1))

    agent = make_agent()

    def run(frame, folder):
        broker = PaperBroker("BTC-PERP", 10_000.0, FillModel(fee_bps=5.0, slippage_bps=2.0))
        trader = Trader(agent, ReplayProvider(frame, history_bars=start), broker, RiskLimits(0.5, 1.0),
                        tmp_path / folder, emergency_poll_interval_s=0.01, emergency_poll_timeout_s=5.0)
        stats = trader.run()
        with open(stats.registro_path, newline="") as fh:
            return [(r["bar_ts"], r["action_raw"], r["gap_before"]) for r in csv.DictReader(fh)]

    clean = run(bars, "clean")
    assert run(doubled, "doubled") == clean  # one row per minute, the same decisions: the copy changed nothing
    dup_ts = bars["ts"][k].isoformat(timespec="seconds")
    assert any(f"bar {dup_ts} field ts=" in m and "[duplicate_minute]" in m for m in caplog_loguru)
