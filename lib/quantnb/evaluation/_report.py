"""The evaluation report of one equity curve: every figure with its uncertainty."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass

import numpy as np

from quantnb.errors import ConfigError
from quantnb.evaluation._bootstrap import Record, bootstrap_ci
from quantnb.evaluation._sharpe import (
    deflated_sharpe_ratio,
    min_track_record_length,
    probabilistic_sharpe_ratio,
    return_moments,
)

SIGNIFICANCE = 0.95  # PSR / DSR level a figure must reach to be called distinguishable from zero


def daily_returns(equity_usd: np.ndarray, bar_ts: list[dt.datetime]) -> np.ndarray:
    """Return the returns between UTC day ends of an equity curve (the first against its first mark)."""
    eq = np.asarray(equity_usd, dtype=np.float64)
    if eq.size != len(bar_ts):
        raise ConfigError(f"equity has {eq.size} marks but bar_ts {len(bar_ts)}: give one time per mark")
    days = [t.date() for t in bar_ts]
    ends = [eq[0]] + [eq[i] for i in range(1, eq.size) if i == eq.size - 1 or days[i + 1] != days[i]]
    e = np.asarray(ends, dtype=np.float64)
    return e[1:] / e[:-1] - 1.0


@dataclass(frozen=True)
class SharpeReport(Record):
    """Sharpe, return and their uncertainty for one equity curve (see :func:`sharpe_report`); no NaN or infinity.

    Attributes
    ----------
    sharpe_annualised : float
        Per-bar Sharpe times ``sqrt(periods_per_year)``.
    sharpe_ci_low, sharpe_ci_high : float
        Its stationary block bootstrap percentile interval (annualised alike).
    return_ci_low, return_ci_high : float
        Bootstrap interval of the total return (fraction).
    sharpe_daily_annualised : float or None
        Sharpe of daily returns times ``sqrt(365)``; None with fewer than 2 days.
    n_days : int
        Daily returns behind it.
    psr : float
        Probability the true per-bar Sharpe exceeds 0 (Bailey & López de Prado 2012).
    dsr : float
        Deflated Sharpe: PSR against the expected best of ``n_trials`` unskilled trials (2014).
    n_trials : int
        Configurations evaluated on this data that the DSR accounts for.
    min_track_record_days : float or None
        Days of such returns needed for PSR >= 0.95; None when the Sharpe is <= 0 (never).
    skew, kurtosis : float
        Of the per-bar returns (kurtosis not excess).
    n_bars : int
        Per-bar returns.
    ci_level : float
        Coverage of the intervals.
    verdict : str
        One sentence: whether the result is distinguishable from zero, and by which figure.
    """

    sharpe_annualised: float
    sharpe_ci_low: float
    sharpe_ci_high: float
    return_ci_low: float
    return_ci_high: float
    sharpe_daily_annualised: float | None
    n_days: int
    psr: float
    dsr: float
    n_trials: int
    min_track_record_days: float | None
    skew: float
    kurtosis: float
    n_bars: int
    ci_level: float
    verdict: str


def _verdict(name: str, r: SharpeReport, periods_per_year: float) -> str:
    span_days = r.n_bars * 365.0 / periods_per_year  # the bars' span, not the calendar days they touch
    days = f"{span_days:.1f} day" + ("" if f"{span_days:.1f}" == "1.0" else "s")
    ci = f"{r.ci_level:.0%} CI of the annualised Sharpe [{r.sharpe_ci_low:.2f}, {r.sharpe_ci_high:.2f}]"
    if r.psr <= 1 - SIGNIFICANCE and r.sharpe_ci_high < 0:
        return f"{name}: loses, distinguishably from zero ({ci}, PSR {r.psr:.2f}) over {days}."
    if r.psr < SIGNIFICANCE or r.sharpe_ci_low <= 0 <= r.sharpe_ci_high:
        return (f"{name}: not distinguishable from zero ({ci}, PSR {r.psr:.2f} < {SIGNIFICANCE}) over "
                f"{days}.")
    if r.dsr < SIGNIFICANCE:
        return (f"{name}: positive alone (PSR {r.psr:.2f}), but not once {r.n_trials} trials are counted "
                f"(DSR {r.dsr:.2f} < {SIGNIFICANCE}); {ci}.")
    return f"{name}: distinguishable from zero after {r.n_trials} trials (DSR {r.dsr:.2f}); {ci}."


def sharpe_report(
    equity_usd: np.ndarray, bar_ts: list[dt.datetime], *, periods_per_year: float, n_trials: int = 1,
    trial_sharpe_var: float | None = None, n_boot: int = 1000, mean_block_len: float | None = None,
    level: float = 0.95, seed: int = 0, name: str = "result",
) -> SharpeReport:
    """Measure an equity curve's Sharpe and return with bootstrap CIs, PSR, DSR and track-record length.

    Parameters
    ----------
    equity_usd : np.ndarray, shape (n,), float64
        Equity at each mark (n >= 3), > 0.
    bar_ts : list of datetime, length n
        Mark times, ascending (for the daily returns).
    periods_per_year : float
        Bars per year (525,600 for 1-minute bars).
    n_trials : int, default 1
        Configurations evaluated on the same data, for the DSR.
    trial_sharpe_var : float, optional
        Variance of their per-bar Sharpes; see :func:`deflated_sharpe_ratio` for the default.
    n_boot, mean_block_len, level, seed
        Of :func:`bootstrap_ci`.
    name : str, default "result"
        Subject of the verdict sentence, e.g. ``"agent"``.

    Raises
    ------
    ConfigError
        If the curve is too short or not positive and finite.
    """
    eq = np.asarray(equity_usd, dtype=np.float64)
    if eq.ndim != 1 or eq.size < 3 or not (np.isfinite(eq).all() and (eq > 0).all()):
        raise ConfigError(f"{name}: equity curve needs >= 3 positive finite values, got shape {eq.shape}")
    r = eq[1:] / eq[:-1] - 1.0
    mom = return_moments(r)
    ci = bootstrap_ci(r, periods_per_year=periods_per_year, n_boot=n_boot, mean_block_len=mean_block_len,
                      level=level, seed=seed)
    daily = daily_returns(eq, bar_ts)
    daily_sr = None if daily.size < 2 else return_moments(daily).sharpe * math.sqrt(365.0)
    mtrl = min_track_record_length(mom.sharpe, skew=mom.skew, kurtosis=mom.kurtosis, confidence=SIGNIFICANCE)
    report = SharpeReport(
        sharpe_annualised=mom.sharpe * math.sqrt(periods_per_year),
        sharpe_ci_low=ci.sharpe_ci_low, sharpe_ci_high=ci.sharpe_ci_high,
        return_ci_low=ci.return_ci_low, return_ci_high=ci.return_ci_high,
        sharpe_daily_annualised=daily_sr, n_days=int(daily.size),
        psr=probabilistic_sharpe_ratio(mom.sharpe, mom.n, skew=mom.skew, kurtosis=mom.kurtosis),
        dsr=deflated_sharpe_ratio(mom.sharpe, mom.n, n_trials=n_trials, trial_sharpe_var=trial_sharpe_var,
                                  skew=mom.skew, kurtosis=mom.kurtosis),
        n_trials=int(n_trials),
        min_track_record_days=None if math.isinf(mtrl) else mtrl * 365.0 / periods_per_year,
        skew=mom.skew, kurtosis=mom.kurtosis, n_bars=mom.n, ci_level=level, verdict="")
    return SharpeReport(**{**asdict(report), "verdict": _verdict(name, report, periods_per_year)})


# two-sided 95 % Student-t quantiles t_{0.975, df}, df = 1 .. 30 (any statistics table)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def mean_ci(values: np.ndarray) -> tuple[float, float, float, float]:
    """Return the mean, sd and 95 % Student-t interval of the mean of a few values (e.g. one per seed).

    Parameters
    ----------
    values : np.ndarray, shape (n,), float64
        n >= 2, finite.

    Returns
    -------
    (mean, sd, ci_low, ci_high) : tuple of float
        ``sd`` with ``ddof=1``; ``mean -+ t_{0.975, n-1} * sd / sqrt(n)`` (1.96 beyond 30 degrees of freedom).

    Raises
    ------
    ConfigError
        If fewer than 2 values or one is not finite.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size < 2 or not np.isfinite(v).all():
        raise ConfigError(f"mean_ci: need >= 2 finite values, got {v.tolist()}")
    mean, sd = float(v.mean()), float(v.std(ddof=1))
    t = _T975[v.size - 2] if v.size - 1 <= len(_T975) else 1.96
    half = t * sd / math.sqrt(v.size)
    return mean, sd, mean - half, mean + half
