"""Stationary block bootstrap (Politis & Romano 1994) of a return series' Sharpe and total return."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np

from quantnb.errors import ConfigError
from quantnb.evaluation._sharpe import _returns


def stationary_bootstrap_indices(n: int, n_boot: int, mean_block_len: float, seed: int) -> np.ndarray:
    """Draw ``n_boot`` stationary-bootstrap resamples of the positions ``0 .. n-1``.

    Each resample starts at a uniform position; every next position is, with probability
    ``p = 1 / mean_block_len``, a new uniform position, else the previous one plus 1 (wrapping
    to 0 after ``n - 1``). Blocks thus have geometric lengths of mean ``mean_block_len``.
    Draw order (so a reader can recompute it): ``rng = numpy.random.default_rng(seed)``, then
    ``starts = rng.integers(0, n, (n_boot, n))`` and ``restart = rng.random((n_boot, n)) < p``.

    Parameters
    ----------
    n : int
        Series length, >= 1.
    n_boot : int
        Resamples, >= 1.
    mean_block_len : float
        Mean block length in observations, >= 1 (1: the i.i.d. bootstrap).
    seed : int
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    np.ndarray, shape (n_boot, n), int64

    Raises
    ------
    ConfigError
        If an argument is out of range.

    References
    ----------
    Politis & Romano, "The Stationary Bootstrap", JASA 89(428), 1994.
    """
    if n < 1 or n_boot < 1 or not mean_block_len >= 1:
        raise ConfigError(f"n={n}, n_boot={n_boot}, mean_block_len={mean_block_len}: need n >= 1, n_boot >= 1 "
                          "and mean_block_len >= 1")
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n, (n_boot, n))
    restart = rng.random((n_boot, n)) < 1.0 / mean_block_len
    restart[:, 0] = True
    t = np.arange(n)
    last = np.maximum.accumulate(np.where(restart, t, 0), axis=1)  # where the current block began
    return (np.take_along_axis(starts, last, axis=1) + (t - last)) % n


def default_block_len(n: int) -> float:
    """Return the default mean block length, ``max(1, n ** (1/3))`` (the optimal rate, Politis & White 2004)."""
    return max(1.0, n ** (1.0 / 3.0))


class Record:
    """Base of the evaluation's result dataclasses: :meth:`to_dict` gives their fields."""

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict."""
        return asdict(cast(Any, self))


@dataclass(frozen=True)
class BootstrapCI:
    """Percentile confidence intervals from a stationary block bootstrap."""

    sharpe_ci_low: float
    sharpe_ci_high: float
    return_ci_low: float
    return_ci_high: float
    level: float
    n_boot: int
    mean_block_len: float
    seed: int


def bootstrap_ci(
    returns: np.ndarray, *, periods_per_year: float = 1.0, n_boot: int = 1000, mean_block_len: float | None = None,
    level: float = 0.95, seed: int = 0, chunk: int = 100,
) -> BootstrapCI:
    """Return stationary-bootstrap percentile CIs of the Sharpe ratio and the total return ``prod(1 + r) - 1``.

    ``chunk`` (resamples drawn at once) changes the draws unless ``chunk >= n_boot``: keep it fixed for
    reproducible figures.
    """
    r = _returns(returns)
    if not 0.0 < level < 1.0:
        raise ConfigError(f"level={level}: give a coverage strictly between 0 and 1, e.g. 0.95")
    block = default_block_len(r.size) if mean_block_len is None else float(mean_block_len)
    sharpes, totals = [], []
    for k in range(0, n_boot, chunk):
        m = min(chunk, n_boot - k)
        sample = r[stationary_bootstrap_indices(r.size, m, block, seed + k)]
        mu, sd = sample.mean(axis=1), sample.std(axis=1, ddof=1)
        sharpes.append(np.divide(mu, sd, out=np.zeros_like(mu), where=sd > 0) * math.sqrt(periods_per_year))
        totals.append(np.expm1(np.log1p(sample).sum(axis=1)))
    qs = [(1 - level) / 2, (1 + level) / 2]
    s_lo, s_hi = np.quantile(np.concatenate(sharpes), qs)
    t_lo, t_hi = np.quantile(np.concatenate(totals), qs)
    return BootstrapCI(float(s_lo), float(s_hi), float(t_lo), float(t_hi), level, n_boot, block, seed)
