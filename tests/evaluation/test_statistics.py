"""The statistics module against published examples, hand computations and synthetic markets."""

from __future__ import annotations

import datetime as dt
import math
import statistics

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from quantnb.errors import ConfigError
from quantnb.evaluation import (
    deflated_sharpe_ratio,
    pbo_cscv,
    purged_kfold_splits,
    return_moments,
    sharpe_report,
    shift_null,
    stationary_bootstrap_indices,
    walk_forward_splits,
)
from quantnb.evaluation._bootstrap import bootstrap_ci
from quantnb.evaluation._sharpe import (
    expected_max_sharpe,
    min_track_record_length,
    probabilistic_sharpe_ratio,
    sharpe_ratio,
)


def test_deflated_sharpe_matches_the_papers_numerical_example():
    # Bailey & López de Prado 2014, "The Deflated Sharpe Ratio", section "A numerical example":
    # N = 100 trials, V[SR_n] = 1/2 annualised, T = 1250 daily returns, annualised SR 2.5,
    # skew -3, kurtosis 10  ->  SR0 ~ 0.1132 (per day) and DSR ~ 0.9004.
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    dsr = deflated_sharpe_ratio(2.5 / math.sqrt(250), 1250, n_trials=100, trial_sharpe_var=0.5 / 250,
                                skew=-3.0, kurtosis=10.0)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    assert dsr == pytest.approx(0.9004, abs=5e-5)


def test_psr_at_the_minimum_track_record_length_is_the_confidence():
    # MinTRL (Bailey & López de Prado 2012, eq. 11) is PSR (eq. 7) solved for n
    sr, skew, kurt = 0.08, -0.7, 6.0
    n = min_track_record_length(sr, skew=skew, kurtosis=kurt, confidence=0.95)
    assert probabilistic_sharpe_ratio(sr, n, skew=skew, kurtosis=kurt) == pytest.approx(0.95, abs=1e-9)
    assert min_track_record_length(-0.1) == math.inf
    assert probabilistic_sharpe_ratio(0.0, 100) == pytest.approx(0.5)
    assert deflated_sharpe_ratio(0.05, 500, n_trials=1) == probabilistic_sharpe_ratio(0.05, 500)


def test_moments_and_sharpe_by_hand():
    r = np.array([0.01, -0.02, 0.03, 0.0])
    m = return_moments(r)
    assert m.sharpe == pytest.approx(statistics.mean(r) / statistics.stdev(r))
    assert sharpe_ratio(r, periods_per_year=365) == pytest.approx(m.sharpe * math.sqrt(365))
    d = r - r.mean()
    assert m.skew == pytest.approx(np.mean(d**3) / np.mean(d**2) ** 1.5)
    assert m.kurtosis == pytest.approx(np.mean(d**4) / np.mean(d**2) ** 2)
    assert return_moments(np.ones(5)).sharpe == 0.0
    with pytest.raises(ConfigError, match="element 1 is nan"):
        return_moments(np.array([0.1, np.nan, 0.2]))


def _hand_bootstrap_indices(n: int, n_boot: int, block: float, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n, (n_boot, n)).tolist()
    restart = (rng.random((n_boot, n)) < 1.0 / block).tolist()
    out = []
    for b in range(n_boot):
        row = [starts[b][0]]
        for t in range(1, n):
            row.append(starts[b][t] if restart[b][t] else (row[-1] + 1) % n)
        out.append(row)
    return out


def test_bootstrap_matches_a_hand_computation_on_a_fixed_series():
    r = [0.01, -0.02, 0.03, 0.0, 0.015]
    idx = _hand_bootstrap_indices(5, 4, 2.0, 7)
    assert stationary_bootstrap_indices(5, 4, 2.0, 7).tolist() == idx
    sharpes, totals = [], []
    for row in idx:
        x = [r[i] for i in row]
        sd = statistics.stdev(x)
        sharpes.append(statistics.mean(x) / sd if sd > 0 else 0.0)
        totals.append(math.prod(1 + v for v in x) - 1)

    def q(values: list[float], p: float) -> float:  # numpy's default (linear) quantile, by hand
        v, h = sorted(values), (len(values) - 1) * p
        return v[math.floor(h)] + (h - math.floor(h)) * (v[math.ceil(h)] - v[math.floor(h)])

    ci = bootstrap_ci(np.array(r), n_boot=4, mean_block_len=2.0, level=0.5, seed=7)
    assert ci.sharpe_ci_low == pytest.approx(q(sharpes, 0.25)) and ci.sharpe_ci_high == pytest.approx(q(sharpes, 0.75))
    assert ci.return_ci_low == pytest.approx(q(totals, 0.25)) and ci.return_ci_high == pytest.approx(q(totals, 0.75))


def test_bootstrap_with_endless_blocks_resamples_circular_shifts_so_the_total_return_is_exact():
    r = np.array([0.01, -0.02, 0.03, 0.0, 0.015, -0.005])
    ci = bootstrap_ci(r, n_boot=50, mean_block_len=1e15, seed=3)
    total = float(np.prod(1 + r) - 1)
    assert ci.return_ci_low == pytest.approx(total) and ci.return_ci_high == pytest.approx(total)
    again = bootstrap_ci(r, n_boot=50, mean_block_len=2, seed=3)
    assert again == bootstrap_ci(r, n_boot=50, mean_block_len=2, seed=3)  # seeded


def _curve(returns: np.ndarray) -> tuple[np.ndarray, list[dt.datetime]]:
    eq = 1e4 * np.cumprod(np.r_[1.0, 1.0 + returns])
    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    return eq, [t0 + dt.timedelta(minutes=i) for i in range(eq.size)]


def test_iid_zero_mean_returns_with_eight_trials_are_not_called_skill():
    rng = np.random.default_rng(11)
    eq, ts = _curve(rng.normal(0.0, 1e-3, 10_080))  # one week of minutes, no edge
    rep = sharpe_report(eq, ts, periods_per_year=525_600, n_trials=8, name="agent")
    assert rep.dsr < 0.95
    assert rep.sharpe_ci_low < 0 < rep.sharpe_ci_high
    assert rep.return_ci_low < 0 < rep.return_ci_high
    assert "not distinguishable from zero" in rep.verdict
    assert rep.n_days == 8 and rep.sharpe_daily_annualised is not None
    assert rep.verdict.endswith("over 7.0 days."), rep.verdict  # the span of the bars, not the 8 dates they touch
    half = sharpe_report(*_curve(rng.normal(0.0, 1e-3, 720)), periods_per_year=525_600, name="agent")
    assert half.verdict.endswith("over 0.5 days."), half.verdict


def test_a_planted_seeded_drift_is_called_skill_after_eight_trials():
    rng = np.random.default_rng(12)
    eq, ts = _curve(rng.normal(2e-4, 1e-3, 10_080))  # per-minute Sharpe 0.2
    rep = sharpe_report(eq, ts, periods_per_year=525_600, n_trials=8, name="agent")
    assert rep.dsr > 0.95 and rep.sharpe_ci_low > 0
    assert "distinguishable from zero after 8 trials" in rep.verdict
    assert rep.min_track_record_days is not None and rep.min_track_record_days < 7


def test_pbo_by_hand_and_on_synthetic_trials():
    # 2 trials x 2 folds: each in-sample winner is the out-of-sample loser, in both splits
    assert pbo_cscv(np.array([[1.0, 0.0], [0.0, 1.0]])) == 1.0
    # one trial dominates every fold: never overfit
    assert pbo_cscv(np.array([[3.0, 3, 3, 3], [2, 2, 2, 2], [1, 1, 1, 1]])) == 0.0
    noise = np.random.default_rng(5).normal(size=(30, 8))  # trials differ by noise only
    assert 0.3 < pbo_cscv(noise) < 0.7
    with pytest.raises(ConfigError, match="even n_folds"):
        pbo_cscv(np.ones((3, 3)))


@settings(max_examples=60, deadline=None)
@given(
    horizons=st.lists(st.integers(0, 30), min_size=4, max_size=80),
    gaps=st.data(),
    n_folds=st.integers(2, 6),
    embargo=st.integers(0, 20),
    mode=st.sampled_from(["anchored", "rolling"]),
)
@example(horizons=[5, 5, 5, 5], gaps=None, n_folds=2, embargo=3, mode="anchored")
def test_purged_folds_keep_every_training_label_clear_of_the_test_span(horizons, gaps, n_folds, embargo, mode):
    n = len(horizons)
    steps = [1] * n if gaps is None else gaps.draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    t0 = np.cumsum(steps)
    t1 = t0 + np.array(horizons)
    n_folds = min(n_folds, n - 1)
    for fold in purged_kfold_splits(t0, t1, n_folds=n_folds, embargo=embargo):
        assert not set(fold.train) & set(fold.test)
        before = fold.train[t0[fold.train] <= fold.test_start]
        assert (t1[before] < fold.test_start - embargo).all()
        after = fold.train[t0[fold.train] > fold.test_start]
        assert (t0[after] > fold.test_end + embargo).all()
    try:
        folds = walk_forward_splits(t0, t1, n_folds=n_folds, embargo=embargo, mode=mode)
    except ConfigError as e:
        assert "no training label" in str(e)
        return
    for fold in folds:
        assert (t1[fold.train] < fold.test_start - embargo).all()
        assert fold.train.max() < fold.test.min()


def test_walk_forward_with_datetimes_rolling_and_anchored():
    t0 = np.array([np.datetime64("2024-01-01T00:00") + np.timedelta64(i, "m") for i in range(100)])
    t1 = t0 + np.timedelta64(10, "m")
    anchored = walk_forward_splits(t0, t1, n_folds=3, embargo=dt.timedelta(minutes=10))
    rolling = walk_forward_splits(t0, t1, n_folds=3, embargo=dt.timedelta(minutes=10), mode="rolling")
    assert [f.train[0] for f in anchored] == [0, 0, 0]
    assert [f.train[0] for f in rolling] == [0, 25, 50]
    for f in anchored + rolling:  # 10 min horizon + 10 min embargo: the 20 labels before the test go
        assert f.train[-1] == f.test[0] - 21
    with pytest.raises(ConfigError, match="sort the labels"):
        walk_forward_splits(t0[::-1], t1[::-1], n_folds=2)
    with pytest.raises(ConfigError, match="same non-zero length"):
        purged_kfold_splits(np.array([]), np.array([]), n_folds=2)


def test_shift_null_rewards_timing_and_not_exposure():
    rng = np.random.default_rng(21)
    r = rng.normal(0, 1e-3, 5_000)
    prophet = np.sign(r)  # knows the next return: timing skill
    assert shift_null(prophet, r, n_shifts=199, seed=1).p_value == pytest.approx(1 / 200)
    always_long = np.ones(5_000)  # exposure only: every shift is the same series
    res = shift_null(always_long, r, n_shifts=199, seed=1)
    assert res.p_value == 1.0 and res.gross_return_frac == pytest.approx(r.sum())
    noise = rng.choice([-1.0, 0.0, 1.0], 5_000)  # no timing
    assert 0.05 < shift_null(noise, r, n_shifts=199, seed=1).p_value < 0.95
    with pytest.raises(ConfigError, match="two equal 1-d finite arrays"):
        shift_null(np.ones(3), np.ones(4))
