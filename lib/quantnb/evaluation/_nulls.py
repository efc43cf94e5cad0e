"""Cost-matched null of a trading record: the same positions, their timing destroyed by circular shifts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantnb.errors import ConfigError


@dataclass(frozen=True)
class ShiftNull:
    """The agent's gross PnL against circularly shifted copies of its own positions.

    Attributes
    ----------
    gross_return_frac : float
        ``sum_t held_frac[t] * asset_return[t]``: the positions' gross (fee-free, simple-sum) return.
    null_mean, null_sd : float
        Of the shifted copies' gross returns.
    p_value : float
        ``(1 + #{null >= observed}) / (1 + n_shifts)``: one-sided, timing skill as the alternative.
    n_shifts : int
    """

    gross_return_frac: float
    null_mean: float
    null_sd: float
    p_value: float
    n_shifts: int


def shift_null_samples(held_frac: np.ndarray, asset_return: np.ndarray, *, n_shifts: int = 999,
                       seed: int = 0) -> tuple[float, np.ndarray]:
    """Return the observed gross return and the shifted copies' gross returns (the null's draws).

    Parameters
    ----------
    held_frac, asset_return, n_shifts, seed
        As in :func:`shift_null` (the same draws for the same seed).

    Returns
    -------
    (observed, null) : tuple of float and np.ndarray, shape (n_shifts,), float64

    Raises
    ------
    ConfigError
        As :func:`shift_null`.
    """
    held = np.asarray(held_frac, dtype=np.float64)
    r = np.asarray(asset_return, dtype=np.float64)
    if held.shape != r.shape or held.ndim != 1 or held.size < 2 or not (np.isfinite(held).all()
                                                                       and np.isfinite(r).all()):
        raise ConfigError(f"positions {held.shape} and returns {r.shape}: give two equal 1-d finite arrays of >= 2 "
                          "steps")
    offsets = np.random.default_rng(seed).integers(1, held.size, n_shifts)
    return float(held @ r), np.array([float(np.roll(held, int(k)) @ r) for k in offsets])


def shift_null(held_frac: np.ndarray, asset_return: np.ndarray, *, n_shifts: int = 999, seed: int = 0) -> ShiftNull:
    """Test whether the positions' timing earns more than the same positions at random offsets.

    Shifting the position series circularly keeps its exposure, its distribution and (but for the
    wrap-around) its turnover, hence its costs, and destroys its alignment with the prices.

    Parameters
    ----------
    held_frac : np.ndarray, shape (n,), float64
        Position notional over equity held over each step.
    asset_return : np.ndarray, shape (n,), float64
        The instrument's simple return over the same step (close to close).
    n_shifts : int, default 999
        Random offsets in ``1 .. n-1`` (with replacement).
    seed : int, default 0
        Seed of ``numpy.random.default_rng``.

    Raises
    ------
    ConfigError
        If the arrays differ in shape, hold fewer than 2 steps, or a value is not finite.

    References
    ----------
    A cost-matched permutation benchmark, after the bootstrap of trading rules in White, "A Reality
    Check for Data Snooping", Econometrica 68(5), 2000.
    """
    observed, null = shift_null_samples(held_frac, asset_return, n_shifts=n_shifts, seed=seed)
    return ShiftNull(observed, float(null.mean()), float(null.std(ddof=1)) if null.size > 1 else 0.0,
                     float((1 + (null >= observed).sum()) / (1 + null.size)), int(null.size))
