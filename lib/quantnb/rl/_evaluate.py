"""Deterministic evaluation of an agent on a held-out period, against buy-and-hold."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from loguru import logger

from quantnb.errors import ConfigError
from quantnb.rl._env import TradingEnv
from quantnb.rl._metrics import MINUTES_PER_YEAR, EvaluationResult, PerformanceMetrics, performance_metrics
from quantnb.rl._plot import plot_equity_curve

__all__ = ["MINUTES_PER_YEAR", "EvaluationResult", "PerformanceMetrics", "Predictor", "evaluate_agent",
           "performance_metrics"]


class Predictor(Protocol):
    """Anything with SB3's ``predict`` (a ``SAC`` model, or a stub in tests)."""

    def predict(self, observation: np.ndarray, deterministic: bool = ...) -> tuple[np.ndarray, Any]:
        """Return ``(action, state)`` for ``observation``.

        Parameters
        ----------
        observation : numpy.ndarray, shape (n_obs,), float32
            One observation.
        deterministic : bool
            Take the policy's mean action instead of sampling.

        Returns
        -------
        action : numpy.ndarray, shape (n_actions,), float32
        state : Any
            Recurrent state (None for SAC).
        """
        ...



def _periods_per_year(ts: list[dt.datetime]) -> float:
    if len(ts) < 2:
        return float(MINUTES_PER_YEAR)
    step_s = float(np.median(np.diff(np.array([t.timestamp() for t in ts]))))
    return 365.0 * 86_400.0 / step_s if step_s > 0 else float(MINUTES_PER_YEAR)


def evaluate_agent(
    model: Predictor, env: TradingEnv, *, plot_path: str | Path | None = None, periods_per_year: float | None = None
) -> EvaluationResult:
    """Run the agent deterministically over ``env``'s whole period and measure it.

    Parameters
    ----------
    model : Predictor
        Usually the trained ``SAC``; called as ``model.predict(obs, deterministic=True)``.
    env : TradingEnv
        Built on the held-out period, ``random_start=False`` and no ``max_episode_steps``.
    plot_path : str or Path, optional
        Where to save the equity-curve PNG (see :func:`plot_equity_curve`).
    periods_per_year : float, optional
        Bars per year for the Sharpe ratio; default inferred from the median bar spacing
        (525,600 for 1-minute bars).

    Returns
    -------
    EvaluationResult

    Raises
    ------
    ConfigError
        If ``env`` draws random starts or truncates episodes.
    """
    if env.random_start or (env.max_episode_steps is not None and env.max_episode_steps < env.n_period_steps):
        raise ConfigError(
            "evaluation env must span its whole period: build it with random_start=False and max_episode_steps=None"
        )
    obs, info = env.reset(seed=0)
    ts, equity, pos, closes = [info["bar_ts"]], [info["equity_usd"]], [info["position_frac"]], [info["close_usd"]]
    observations, actions, targets = [], [], []
    while True:
        action, _ = model.predict(obs, deterministic=True)
        observations.append(obs)
        actions.append(float(np.asarray(action, dtype=np.float32).reshape(-1)[0]))
        obs, _, terminated, truncated, info = env.step(action)
        targets.append(info["target_frac"])
        ts.append(info["bar_ts"])
        equity.append(info["equity_usd"])
        pos.append(info["position_frac"])
        closes.append(info["close_usd"])
        if terminated or not truncated:
            if terminated:
                break
            continue
        if not env.has_next_run:
            break
        # a gap: hold the position through it; the mark after the last step before the gap
        # becomes the first decision bar after the warm-up (no observation spans the gap)
        obs, info = env.reset(options={"continue": True})
        ts[-1], equity[-1], pos[-1], closes[-1] = info["bar_ts"], info["equity_usd"], info["position_frac"], \
            info["close_usd"]
    ppy = _periods_per_year(ts) if periods_per_year is None else float(periods_per_year)
    eq = np.array(equity, dtype=np.float64)
    close = np.array(closes, dtype=np.float64)
    bh = eq[0] * close / close[0]
    pf = env.portfolio
    result = EvaluationResult(
        agent=performance_metrics(eq, periods_per_year=ppy, n_trades=pf.n_trades, fees_usd=pf.fees_paid_usd,
                                  costs=pf.cost_summary()),
        buy_and_hold=performance_metrics(bh, periods_per_year=ppy),
        bar_ts=ts,
        equity_usd=eq,
        buy_and_hold_equity_usd=bh,
        position_frac=np.array(pos, dtype=np.float64),
        observations=np.array(observations, dtype=np.float32),
        actions=np.array(actions, dtype=np.float32),
        target_fracs=np.array(targets, dtype=np.float64),
        periods_per_year=ppy,
    )
    a, b = result.agent, result.buy_and_hold
    logger.info(
        "eval/total_return_frac={:.4f} eval/sharpe={:.2f} eval/max_drawdown_frac={:.4f} eval/n_trades={} "
        "eval/fees_usd={:.2f} eval/bh_total_return_frac={:.4f} eval/bh_max_drawdown_frac={:.4f}",
        a.total_return_frac,
        a.sharpe_annualised,
        a.max_drawdown_frac,
        a.n_trades,
        a.fees_usd,
        b.total_return_frac,
        b.max_drawdown_frac,
    )
    if plot_path is not None:
        plot_equity_curve(result, plot_path)
    return result
