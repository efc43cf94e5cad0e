"""Performance metrics and the evaluation result (shared by :mod:`._evaluate` and :mod:`._plot`)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from quantnb.errors import ConfigError

MINUTES_PER_YEAR = 525_600  # 365 * 24 * 60: crypto trades around the clock


@dataclass(frozen=True)
class PerformanceMetrics:
    """Performance of one equity curve.

    Attributes
    ----------
    total_return_frac : float
        ``equity[-1] / equity[0] - 1``.
    sharpe_annualised : float
        ``mean(r) / std(r, ddof=1) * sqrt(periods_per_year)`` of per-bar simple returns ``r``,
        risk-free rate 0; 0.0 when returns do not vary. The square-root-of-time scaling assumes
        i.i.d. returns (Lo, "The Statistics of Sharpe Ratios", Financial Analysts Journal, 2002);
        with 1-minute bars ``periods_per_year = 525_600``.
    max_drawdown_frac : float
        Largest fall from a running peak, ``max_t (1 - equity_t / max_{s<=t} equity_s)``, >= 0.
    n_trades : int
        Fills.
    fees_usd : float
        Fees paid, USD.
    n_steps : int
        Bars traded (``len(equity) - 1``).
    cost_bps : float
        Execution costs (fees and price impact) per traded notional, bps.
    impact_usd, funding_usd : float
        Price impact of fills against their reference price, and funding paid (< 0: received), USD.
    """

    total_return_frac: float
    sharpe_annualised: float
    max_drawdown_frac: float
    n_trades: int
    fees_usd: float
    n_steps: int
    cost_bps: float = 0.0
    impact_usd: float = 0.0
    funding_usd: float = 0.0


def performance_metrics(
    equity_usd: np.ndarray, *, periods_per_year: float = MINUTES_PER_YEAR, n_trades: int = 0, fees_usd: float = 0.0,
    costs: dict[str, float] | None = None,
) -> PerformanceMetrics:
    """Compute return, Sharpe and drawdown of an equity curve.

    Parameters
    ----------
    equity_usd : np.ndarray, shape (n_steps + 1,), float64
        Equity marked at each bar's close, the first value before any trade; all > 0.
    periods_per_year : float, default 525600
        Bars per year (525,600 for 1-minute bars).
    n_trades, fees_usd : int, float
        Copied into the result.
    costs : dict of str to float, optional
        ``cost_bps``, ``impact_usd`` and ``funding_usd`` (from :meth:`Portfolio.cost_summary`), copied.

    Returns
    -------
    PerformanceMetrics

    Raises
    ------
    ConfigError
        If the curve has fewer than 2 points or a value is not positive.
    """
    eq = np.asarray(equity_usd, dtype=np.float64)
    if eq.ndim != 1 or eq.size < 2 or not (np.isfinite(eq).all() and (eq > 0).all()):
        raise ConfigError(f"equity curve needs >= 2 positive values, got shape {eq.shape}; evaluate a longer period")
    r = eq[1:] / eq[:-1] - 1.0
    sd = float(r.std(ddof=1)) if r.size > 1 else 0.0
    sharpe = float(r.mean()) / sd * math.sqrt(periods_per_year) if sd > 0 else 0.0
    drawdown = 1.0 - eq / np.maximum.accumulate(eq)
    return PerformanceMetrics(
        total_return_frac=float(eq[-1] / eq[0] - 1.0),
        sharpe_annualised=sharpe,
        max_drawdown_frac=float(drawdown.max()),
        n_trades=int(n_trades),
        fees_usd=float(fees_usd),
        n_steps=int(eq.size - 1),
        **{k: float(v) for k, v in (costs or {}).items() if k in ("cost_bps", "impact_usd", "funding_usd")},
    )


@dataclass
class EvaluationResult:
    """Outcome of :func:`evaluate_agent`.

    Attributes
    ----------
    agent, buy_and_hold : PerformanceMetrics
        Buy-and-hold holds ``initial_equity_usd`` of the instrument from the first decision
        bar's close, without fees.
    bar_ts : list of datetime
        Mark times, ``n_steps + 1``: the first decision bar, then each bar after a step.
    equity_usd, buy_and_hold_equity_usd : np.ndarray, shape (n_steps + 1,), float64
    position_frac : np.ndarray, shape (n_steps + 1,), float64
        Position notional over equity at each mark.
    observations : np.ndarray, shape (n_steps, n_obs), float32
        The observation each action was taken on (for research-live parity checks).
    actions : np.ndarray, shape (n_steps,), float32
        Raw deterministic policy outputs, in step order.
    target_fracs : np.ndarray, shape (n_steps,), float64
        Targets from the action interpreter.
    periods_per_year : float
        Used for the Sharpe ratios.
    """

    agent: PerformanceMetrics
    buy_and_hold: PerformanceMetrics
    bar_ts: list[dt.datetime]
    equity_usd: np.ndarray
    buy_and_hold_equity_usd: np.ndarray
    position_frac: np.ndarray
    observations: np.ndarray
    actions: np.ndarray
    target_fracs: np.ndarray
    periods_per_year: float

    def summary_frame(self) -> pl.DataFrame:
        """Return the metrics table.

        Returns
        -------
        polars.DataFrame
            One row per metric, columns ``metric``, ``agent``, ``buy_and_hold`` (Float64).
        """
        a, b = asdict(self.agent), asdict(self.buy_and_hold)
        return pl.DataFrame(
            {"metric": list(a), "agent": [float(v) for v in a.values()], "buy_and_hold": [float(v) for v in b.values()]}
        )

    def steps_frame(self) -> pl.DataFrame:
        """Return the steps table.

        Returns
        -------
        polars.DataFrame
            One row per step: ``bar_ts`` (decision bar), ``action_raw``, ``target_frac``,
            ``position_frac_after``, ``equity_usd_after``.
        """
        return pl.DataFrame(
            {
                "bar_ts": self.bar_ts[:-1],
                "action_raw": self.actions.astype(np.float64),
                "target_frac": self.target_fracs,
                "position_frac_after": self.position_frac[1:],
                "equity_usd_after": self.equity_usd[1:],
            }
        )

    def flat_metrics(self) -> dict[str, float]:
        """Return the metrics as one flat mapping.

        Returns
        -------
        dict of str to float
            ``{"total_return_frac": ..., ..., "bh_total_return_frac": ..., ...}`` (agent, then buy-and-hold).
        """
        out = {k: float(v) for k, v in asdict(self.agent).items()}
        out.update({f"bh_{k}": float(v) for k, v in asdict(self.buy_and_hold).items()})
        return out

    def metrics_dict(self) -> dict[str, Any]:
        """Return the metrics nested by curve.

        Returns
        -------
        dict
            ``{"agent": {...}, "buy_and_hold": {...}}`` of plain floats and ints (for YAML/JSON).
        """
        return {"agent": asdict(self.agent), "buy_and_hold": asdict(self.buy_and_hold)}
