"""Meta-labels against a slow reference on the bundled month, the primary side, bet sizes and the sizing report."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from quantnb.classifier import (
    bet_size,
    compare_precision_to_take_all,
    compare_sizing,
    label_events,
    prepare_datasets,
    side_from_column,
)
from quantnb.classifier._afml import BARRIER_PROFIT_TAKE, BARRIER_STOP_LOSS, BARRIER_VERTICAL
from quantnb.classifier._meta import meta_labels, momentum_side
from quantnb.errors import ConfigError, DataError
from tests.classifier._builders import bars
from tests.classifier.test_afml import (
    assert_no_label_past_its_vertical_barrier_or_across_a_gap,
    reference_volatility,
    with_gaps,
)


def minutes_and_gaps(df: pl.DataFrame) -> tuple[list[int], list[bool]]:
    minutes = [int((t - df["ts"][0]).total_seconds() // 60) for t in df["ts"].to_list()]
    gap = df["gap_before"].to_list() if "gap_before" in df.columns else [False] * df.height
    return minutes, gap


def reference_momentum(df: pl.DataFrame, n: int) -> list[int]:
    """Sign of the return over the last n minutes, 0 where the window reaches a gap or the start."""
    minutes, gap = minutes_and_gaps(df)
    closes = df["close"].to_list()
    out = []
    for i in range(df.height):
        j = i - n
        if j < 0 or minutes[i] - minutes[j] != n or any(gap[j + 1:i + 1]):
            out.append(0)
            continue
        r = closes[i] / closes[j] - 1.0
        out.append(1 if r > 0 else -1 if r < 0 else 0)
    return out


def reference_meta(df: pl.DataFrame, side: list[int], horizon: int, pt: float, sl: float, span: int,
                   cost_bps: float) -> list[tuple]:
    """Slow meta-labels: walk each bet's path in its side's direction minute by minute (AFML 3.6)."""
    minutes, gap = minutes_and_gaps(df)
    closes = df["close"].to_list()
    vol = reference_volatility(minutes, gap, closes, span)
    out = []
    for i, p0 in enumerate(closes):
        s = side[i]
        if s == 0 or math.isnan(vol[i]) or vol[i] <= 0:
            continue
        width = vol[i] * math.sqrt(horizon)
        for j in range(i + 1, i + horizon + 1):
            if j >= len(closes) or minutes[j] != minutes[j - 1] + 1 or gap[j]:
                break  # no label across a gap or past the data
            gain = s * (closes[j] / p0 - 1.0)  # the side's return
            if gain >= pt * width - 1e-12:
                out.append((i, j, int(gain > cost_bps * 1e-4), BARRIER_PROFIT_TAKE, gain))
                break
            if gain <= -sl * width + 1e-12:
                out.append((i, j, 0, BARRIER_STOP_LOSS, gain))
                break
            if j == i + horizon:
                out.append((i, j, 0, BARRIER_VERTICAL, gain))
    return out


@pytest.mark.parametrize("side_kind", ["momentum", "random"])
def test_meta_labels_equal_the_slow_reference_on_the_bundled_month(btc_bars: pl.DataFrame, side_kind: str) -> None:
    df = with_gaps(btc_bars.head(12_000))
    if side_kind == "momentum":
        side = momentum_side(df, 30)
        assert side.tolist() == reference_momentum(df, 30)
    else:  # a given side series with no-bet bars
        side = np.random.default_rng(7).choice(np.array([-1, 0, 1], dtype=np.int8), size=df.height)
    ref = reference_meta(df, side.tolist(), 60, 1.0, 2.0, 60, cost_bps=45.0)
    got = meta_labels(df, side, 60, profit_take_mult=1.0, stop_loss_mult=2.0, vol_span_min=60, cost_bps=45.0)
    ts = df["ts"]
    assert got["ts"].to_list() == [ts[i] for i, *_ in ref]
    assert got["t1"].to_list() == [ts[j] for _, j, *_ in ref]
    assert got["label"].to_list() == [lab for _, _, lab, _, _ in ref]
    assert got["barrier"].to_list() == [b for *_, b, _ in ref]
    assert got["trade_return"].to_numpy() == pytest.approx([g for *_, g in ref], abs=1e-15)
    assert (got["side"].to_numpy() == side[[i for i, *_ in ref]]).all()
    # both sides, all three barriers, and profit-taking touches too small to pay 45 bps
    assert set(got["side"].to_list()) == {-1, 1}
    assert {BARRIER_PROFIT_TAKE, BARRIER_STOP_LOSS, BARRIER_VERTICAL} <= set(got["barrier"].to_list())
    pt_skip = got.filter((pl.col("barrier") == BARRIER_PROFIT_TAKE) & (pl.col("label") == 0))
    assert pt_skip.height > 0 and (pt_skip["trade_return"] <= 45e-4).all()


def test_meta_labels_through_label_events_never_cross_a_gap_and_carry_weights(btc_bars: pl.DataFrame) -> None:
    df = with_gaps(btc_bars)
    out = label_events(df, "meta", max_holding_min=60, momentum_min=60, cusum_threshold=0.004)
    assert out.height > 300 and set(out["label"].unique().to_list()) == {0, 1}
    assert_no_label_past_its_vertical_barrier_or_across_a_gap(df, out, 60)
    u = out["uniqueness"].to_numpy()
    assert (u > 0).all() and (u <= 1 + 1e-12).all() and (out["return_weight"].to_numpy() >= 0).all()
    assert (out["side"] != 0).all()


def test_momentum_side_by_hand_is_zero_across_a_gap() -> None:
    df = bars([100.0, 101.0, 100.5, 100.5, 99.0, 98.0, 99.0], minutes=[0, 1, 2, 3, 4, 6, 7])
    # n = 2: bar 2: 100.5 vs 100 -> +1; bar 3: 100.5 vs 101 -> -1; bar 4: 99 vs 100.5 -> -1;
    # bars 5 and 6 reach back across the missing minute 5 -> 0; bars 0 and 1 have no history -> 0
    assert momentum_side(df, 2).tolist() == [0, 0, 1, -1, -1, 0, 0]
    flat = bars([100.0, 100.0, 100.0])
    assert momentum_side(flat, 1).tolist() == [0, 0, 0]  # no move, no bet


def test_a_bad_side_column_names_the_bar_the_value_and_the_fix() -> None:
    df = bars([100.0, 101.0, 102.0], side=[1, None, 2])
    with pytest.raises(DataError, match=r"field side: side 2; a side must be -1 \(short\), 0 \(no bet\) or \+1"):
        side_from_column(df, "side")
    with pytest.raises(ConfigError, match="side_col: column 'signal'"):
        side_from_column(df, "signal")
    with pytest.raises(DataError, match="field side: side 'long'"):
        side_from_column(bars([100.0, 101.0], side=["long", None]), "side")
    ok = bars([100.0, 101.0, 102.0], side=[1, None, -1])
    assert side_from_column(ok, "side").tolist() == [1, 0, -1]


def test_bet_size_against_hand_values() -> None:
    # p = 0.8: z = 0.3 / sqrt(0.16) = 0.75, 2 Phi(0.75) - 1 = 0.546745 (normal table: Phi(0.75) = 0.773373)
    assert bet_size(0.8)[0] == pytest.approx(2 * 0.773373 - 1, abs=1e-6)
    assert bet_size(0.5)[0] == 0.0
    assert bet_size([0.0, 1.0]).tolist() == [-1.0, 1.0]
    p = np.linspace(0.0, 1.0, 201)
    m = bet_size(p)
    assert (np.diff(m) > 0).all()  # strictly monotone
    assert m == pytest.approx(-bet_size(1.0 - p), abs=1e-15)  # odd about 1/2
    assert bet_size(0.8, side=-1.0)[0] == pytest.approx(-0.546745, abs=1e-6)
    assert bet_size(0.8, step=0.1)[0] == pytest.approx(0.5)  # discretised (AFML snippet 10.3)
    assert bet_size([0.3, 0.7], side=[1.0, -1.0], never_reverse=True) == pytest.approx([0.0, -bet_size(0.7)[0]])
    with pytest.raises(ConfigError, match="prob: 1.5 is not a probability"):
        bet_size([0.2, 1.5])


def planted(n: int, seed: int, informative: bool) -> tuple[np.ndarray, np.ndarray]:
    """Bets winning or losing 20 bps at even odds; the probability knows the outcome or is noise."""
    rng = np.random.default_rng(seed)
    win = rng.random(n) < 0.5
    r = np.where(win, 0.002, -0.002)
    noise = rng.normal(0.0, 0.15, n)
    p = np.clip(0.5 + (np.where(win, 0.2, -0.2) if informative else 0.0) + noise, 0.0, 1.0)
    return p, r


def test_a_probability_that_knows_the_losers_makes_sized_beat_unsized() -> None:
    p, r = planted(2000, 1, informative=True)
    res = compare_sizing(p, r, cost_bps=2.0, n_boot=400)
    assert res.sized_return_per_trade > res.unsized_return_per_trade
    assert res.diff_ci_low > 0 and "improves on taking every primary signal" in res.verdict
    assert res.sized_hit_rate > res.unsized_hit_rate and 0 < res.n_taken < res.n_signals
    prec = compare_precision_to_take_all((r > 0).astype(int), (p > 0.5).astype(int), n_boot=400)
    assert prec["precision"] > prec["baseline_precision"] and prec["diff_ci_low"] > 0


def test_a_driftless_market_and_an_uninformed_probability_claim_nothing() -> None:
    claims = 0
    for seed in range(10):
        p, r = planted(2000, 100 + seed, informative=False)
        res = compare_sizing(p, r, cost_bps=2.0, n_boot=400, seed=seed)
        claims += res.diff_ci_low > 0 or res.diff_ci_high < 0
        assert res.mean_size < 0.2  # a noise probability bets little ...
    assert claims <= 2  # ... and the 95 % interval rarely excludes 0 (1 in 20 expected)
    p, r = planted(2000, 100, informative=False)
    res = compare_sizing(p, r, cost_bps=2.0, n_boot=400)
    assert "not distinguishable" in res.verdict
    # shrinking the bets is not skill: the comparison is per unit of bet, not per signal
    assert abs(res.sized_return_per_signal) < abs(res.unsized_return_per_trade)


def test_a_sparse_primary_keeps_every_bar_so_windows_end_at_its_bets(btc_bars: pl.DataFrame) -> None:
    df = btc_bars.head(6000)
    idx = np.arange(df.height)
    side = np.where(idx % 97 == 0, 1, np.where(idx % 131 == 0, -1, 0))
    out = label_events(df.with_columns(signal=pl.Series(side)), "meta", side_rule="column", side_col="signal",
                       max_holding_min=30, vol_span_min=30, keep_unlabelled=True)
    assert out.height == df.height and out["side"].to_list() == side.tolist()
    bets = out.filter(pl.col("label").is_not_null())
    assert 80 < bets.height <= int((side != 0).sum()) and (bets["side"] != 0).all()
    assert out.filter(pl.col("side") == 0)["label"].null_count() == int((side == 0).sum())
    data = prepare_datasets(out, seq_len=16, train_frac=0.6, val_frac=0.2, lookahead_min=30, extra_features=("side",))
    windows = len(data.train) + len(data.val) + len(data.test)
    assert windows > 0.8 * bets.height  # a window of 16 bars ends at (nearly) every labelled bet
    assert data.features[-1] == "side" and set(data.train.targets.tolist()) == {0, 1}
