"""Sharpe ratios and their inference: moments, PSR, DSR, minimum track-record length."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from quantnb.errors import ConfigError

EULER_GAMMA = 0.5772156649015329  # Euler-Mascheroni constant (DSR's expected maximum)
_NORMAL = NormalDist()


def _returns(returns: np.ndarray, name: str = "returns", min_n: int = 2) -> np.ndarray:
    r = np.asarray(returns, dtype=np.float64).reshape(-1)
    if r.size < min_n or not np.isfinite(r).all():
        bad = int(np.flatnonzero(~np.isfinite(r))[0]) if r.size and not np.isfinite(r).all() else None
        where = f"; element {bad} is {r[bad]}" if bad is not None else ""
        raise ConfigError(f"{name}: need >= {min_n} finite values, got {r.size}{where}; evaluate a longer period "
                          "or drop the non-finite values")
    return r


def norm_cdf(x: float) -> float:
    """Return the standard normal CDF at ``x``."""
    return _NORMAL.cdf(x)


def norm_ppf(p: float) -> float:
    """Return the standard normal quantile at ``p`` (0 < p < 1)."""
    return _NORMAL.inv_cdf(p)


@dataclass(frozen=True)
class ReturnMoments:
    """Per-observation Sharpe, skew and kurtosis (not excess: 3 for a normal) of one return series."""

    n: int
    sharpe: float
    skew: float
    kurtosis: float


def return_moments(returns: np.ndarray) -> ReturnMoments:
    """Return the per-observation Sharpe ratio, skewness and kurtosis of ``returns``.

    Parameters
    ----------
    returns : np.ndarray, shape (n,), float64
        Simple returns per bar (or per day), n >= 2, all finite.

    Raises
    ------
    ConfigError
        If there are fewer than 2 returns or one is not finite.
    """
    r = _returns(returns)
    d = r - r.mean()
    m2 = float(np.mean(d**2))
    sd = float(r.std(ddof=1))
    if m2 <= 0 or sd <= 0:
        return ReturnMoments(int(r.size), 0.0, 0.0, 3.0)
    return ReturnMoments(int(r.size), float(r.mean()) / sd, float(np.mean(d**3)) / m2**1.5,
                         float(np.mean(d**4)) / m2**2)


def sharpe_ratio(returns: np.ndarray, *, periods_per_year: float = 1.0) -> float:
    """Return ``mean / std(ddof=1) * sqrt(periods_per_year)`` of ``returns`` (risk-free 0; 0.0 when flat).

    The square-root-of-time scaling assumes i.i.d. returns (Lo, "The Statistics of Sharpe Ratios",
    Financial Analysts Journal 58(4), 2002).
    """
    return return_moments(returns).sharpe * math.sqrt(periods_per_year)


def sharpe_std_error(sharpe: float, n: int, skew: float = 0.0, kurtosis: float = 3.0) -> float:
    """Return the standard error of a per-observation Sharpe estimate under non-normal returns.

    Parameters
    ----------
    sharpe : float
        Per-observation Sharpe ratio.
    n : int
        Observations, >= 2.
    skew, kurtosis : float
        Of the returns; ``kurtosis`` is not excess (3 for a normal).

    Returns
    -------
    float
        ``sqrt((1 - skew*SR + (kurtosis - 1)/4 * SR**2) / (n - 1))`` (Bailey & López de Prado 2012,
        eq. 3, after Mertens 2002).
    """
    if n < 2:
        raise ConfigError(f"n={n}: a Sharpe standard error needs >= 2 observations")
    var = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    return math.sqrt(max(var, 1e-12) / (n - 1))


def probabilistic_sharpe_ratio(
    sharpe: float, n: int, *, skew: float = 0.0, kurtosis: float = 3.0, benchmark_sharpe: float = 0.0
) -> float:
    """Return the PSR ``Phi((SR - SR*) / sharpe_std_error(SR, n, skew, kurtosis))`` of per-observation ratios.

    Bailey & López de Prado, "The Sharpe Ratio Efficient Frontier", Journal of Risk 15(2), 2012, eq. 7.
    """
    return norm_cdf((sharpe - benchmark_sharpe) / sharpe_std_error(sharpe, n, skew, kurtosis))


def expected_max_sharpe(n_trials: int, trial_sharpe_var: float) -> float:
    """Return the expected maximum Sharpe of ``n_trials`` unskilled trials, the DSR's benchmark ``SR0``.

    ``sqrt(V) ((1 - g) Phi^-1(1 - 1/N) + g Phi^-1(1 - 1/(N e)))``, ``g`` Euler's constant; 0.0 for one
    trial (Bailey & López de Prado 2014, eq. 2).
    """
    if n_trials < 1 or not trial_sharpe_var >= 0:
        raise ConfigError(f"n_trials={n_trials}, trial_sharpe_var={trial_sharpe_var}: need n_trials >= 1 and "
                          "a variance >= 0")
    if n_trials == 1:
        return 0.0
    z = (1 - EULER_GAMMA) * norm_ppf(1 - 1 / n_trials) + EULER_GAMMA * norm_ppf(1 - 1 / (n_trials * math.e))
    return math.sqrt(trial_sharpe_var) * z


def deflated_sharpe_ratio(
    sharpe: float, n: int, *, n_trials: int, trial_sharpe_var: float | None = None, skew: float = 0.0,
    kurtosis: float = 3.0,
) -> float:
    """Return the DSR: the PSR against the expected maximum Sharpe of ``n_trials`` unskilled trials.

    Parameters
    ----------
    sharpe : float
        Observed per-observation Sharpe of the selected configuration.
    n : int
        Observations, >= 2.
    n_trials : int
        Configurations evaluated on the same data (trials, seeds, folds, earlier runs), >= 1.
    trial_sharpe_var : float, optional
        Variance of the trials' per-observation Sharpes. None (the trial Sharpes are not known):
        ``1 / (n - 1)``, the sampling variance of a Sharpe estimate when the true Sharpe is 0,
        i.e. trials that differ by noise only.
    skew, kurtosis : float
        Of the selected configuration's returns; ``kurtosis`` not excess.

    Returns
    -------
    float
        In [0, 1]; below 0.95 the Sharpe is not significant at 5 % after the trials.

    References
    ----------
    Bailey & López de Prado, "The Deflated Sharpe Ratio: Correcting for Selection Bias, Backtest
    Overfitting and Non-Normality", Journal of Portfolio Management 40(5), 2014, eq. 2 and 3.
    """
    var = 1.0 / (n - 1) if trial_sharpe_var is None else trial_sharpe_var
    return probabilistic_sharpe_ratio(sharpe, n, skew=skew, kurtosis=kurtosis,
                                      benchmark_sharpe=expected_max_sharpe(n_trials, var))


def min_track_record_length(
    sharpe: float, *, skew: float = 0.0, kurtosis: float = 3.0, benchmark_sharpe: float = 0.0,
    confidence: float = 0.95,
) -> float:
    """Return the observations needed for ``sharpe`` to exceed ``benchmark_sharpe`` at ``confidence``.

    ``1 + (1 - skew SR + (kurtosis - 1) / 4 SR^2) (Phi^-1(confidence) / (SR - SR*))^2``; ``inf`` when
    ``SR <= SR*``. Bailey & López de Prado, "The Sharpe Ratio Efficient Frontier", 2012, eq. 11.
    """
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence={confidence}: give a probability strictly between 0 and 1, e.g. 0.95")
    if sharpe <= benchmark_sharpe:
        return math.inf
    var = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    return 1.0 + max(var, 1e-12) * (norm_ppf(confidence) / (sharpe - benchmark_sharpe)) ** 2
