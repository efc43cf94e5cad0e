"""Deterministic evaluation of an agent on a held-out period, against buy-and-hold."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from loguru import logger

from quantnb.agent._env import TradingEnv
from quantnb.agent._metrics import MINUTES_PER_YEAR, EvaluationResult, PerformanceMetrics, performance_metrics
from quantnb.agent._plot import plot_equity_curve
from quantnb.errors import ConfigError
from quantnb.evaluation import sharpe_report, shift_null

__all__ = ["MINUTES_PER_YEAR", "EvaluationResult", "PerformanceMetrics", "Predictor", "evaluate_agent",
           "performance_metrics", "stitch_evaluations"]


class Predictor(Protocol):
    """Anything with SB3's ``predict`` (a ``SAC`` model, or a stub in tests)."""

    def predict(self, observation: np.ndarray, deterministic: bool = ...) -> tuple[np.ndarray, Any]:
        """Return ``(action, state)`` for ``observation``."""
        ...



def _periods_per_year(ts: list[dt.datetime]) -> float:
    if len(ts) < 2:
        return float(MINUTES_PER_YEAR)
    step_s = float(np.median(np.diff(np.array([t.timestamp() for t in ts]))))
    return 365.0 * 86_400.0 / step_s if step_s > 0 else float(MINUTES_PER_YEAR)


def evaluate_agent(
    model: Predictor, env: TradingEnv, *, plot_path: str | Path | None = None, periods_per_year: float | None = None,
    n_trials: int = 1, trial_sharpe_var: float | None = None, n_boot: int = 1000, seed: int = 0,
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
    n_trials : int, default 1
        Configurations evaluated on this period (this one included), for the deflated Sharpe.
    trial_sharpe_var : float, optional
        Variance of those trials' per-bar Sharpes (see :func:`quantnb.evaluation.deflated_sharpe_ratio`).
    n_boot, seed : int
        Bootstrap resamples and seed of the confidence intervals (:func:`quantnb.evaluation.sharpe_report`).

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
    bh, bh_qty, bh_costs = _buy_and_hold(env, eq[0], close)
    bh_funding = env.hold_funding_usd(bh_qty, ts)  # buy-and-hold pays the agent's funding too
    bh = bh - bh_funding
    bh_costs["funding_usd"] = float(bh_funding[-1]) if np.size(bh_funding) else 0.0
    pf = env.portfolio
    stats = {name: sharpe_report(curve, ts, periods_per_year=ppy, n_trials=n_trials if name == "agent" else 1,
                                 trial_sharpe_var=trial_sharpe_var if name == "agent" else None, n_boot=n_boot,
                                 seed=seed, name=name)
             for name, curve in (("agent", eq), ("buy-and-hold", bh))} if eq.size >= 3 else {}
    result = EvaluationResult(
        agent=performance_metrics(eq, periods_per_year=ppy, n_trades=pf.n_trades, fees_usd=pf.fees_paid_usd,
                                  costs=pf.cost_summary()),
        buy_and_hold=performance_metrics(bh, periods_per_year=ppy, n_trades=1, fees_usd=bh_costs["fees_usd"],
                                         costs=bh_costs),
        bar_ts=ts,
        equity_usd=eq,
        buy_and_hold_equity_usd=bh,
        position_frac=np.array(pos, dtype=np.float64),
        observations=np.array(observations, dtype=np.float32),
        actions=np.array(actions, dtype=np.float32),
        target_fracs=np.array(targets, dtype=np.float64),
        periods_per_year=ppy,
        agent_stats=stats.get("agent"),
        buy_and_hold_stats=stats.get("buy-and-hold"),
        asset_return=close[1:] / close[:-1] - 1.0,
    )
    result = _with_timing_null(result, seed)
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
    for line in result.verdicts():
        logger.info("eval/verdict {}", line)
    if plot_path is not None:
        plot_equity_curve(result, plot_path)
    return result


def _with_timing_null(result: EvaluationResult, seed: int) -> EvaluationResult:
    """Attach the shift null of the agent's positions (needs 2 steps or more)."""
    r = result.asset_return
    if r is not None and r.size >= 2:
        result.timing_null = shift_null(result.position_frac[:-1], r, seed=seed)
    return result


def _buy_and_hold(env: TradingEnv, equity0_usd: float, close_usd: np.ndarray) -> tuple[np.ndarray, float, dict]:
    """Buy with all of ``equity0_usd`` at ``close_usd[0]`` through the agent's fill model; return curve, qty, costs."""
    fm, ref = env.fill_model, float(close_usd[0])
    quote = env.quote(env.first_decision_bar) if fm.uses_quotes else None
    px = ref * (1 + fm.slippage_bps / 1e4)
    for _ in range(4):
        qty = equity0_usd / (px * (1 + fm.fee_bps / 1e4))
        px = fm.fill_price(qty, ref, quote)
        if env.market_rules is not None:
            px = env.market_rules.round_fill_price(px, qty)
    qty = equity0_usd / (px * (1 + fm.fee_bps / 1e4))
    fees, impact = qty * px * fm.fee_bps / 1e4, qty * (px - ref)
    costs = {"cost_bps": (fees + impact) / (qty * px) * 1e4, "fees_usd": fees, "impact_usd": impact}
    return np.concatenate([[equity0_usd], qty * close_usd[1:]]), qty, costs


def stitch_evaluations(
    folds: list[EvaluationResult], *, n_trials: int = 1, trial_sharpe_var: float | None = None, n_boot: int = 1000,
    seed: int = 0,
) -> EvaluationResult:
    """Chain the out-of-sample evaluations of walk-forward folds into one equity curve and measure it.

    Parameters
    ----------
    folds : list of EvaluationResult
        The folds' held-out evaluations, in time order.
    n_trials, trial_sharpe_var, n_boot, seed
        As in :func:`quantnb.evaluation.sharpe_report` (the agent's curve only: buy-and-hold is one trial).

    Raises
    ------
    ConfigError
        If ``folds`` is empty.
    """
    if not folds:
        raise ConfigError("walk-forward: no fold to stitch; give walk_forward_folds >= 1")

    def chain(curves: list[np.ndarray]) -> np.ndarray:
        r = np.concatenate([c[1:] / c[:-1] for c in curves])
        return curves[0][0] * np.concatenate([[1.0], np.cumprod(r)])

    eq = chain([f.equity_usd for f in folds])
    bh = chain([f.buy_and_hold_equity_usd for f in folds])
    ts = [folds[0].bar_ts[0]] + [t for f in folds for t in f.bar_ts[1:]]
    ppy = folds[0].periods_per_year
    stats = {name: sharpe_report(curve, ts, periods_per_year=ppy, n_trials=n_trials if name == "agent" else 1,
                                 trial_sharpe_var=trial_sharpe_var if name == "agent" else None, n_boot=n_boot,
                                 seed=seed, name=f"{name} (walk-forward, {len(folds)} folds)")
             for name, curve in (("agent", eq), ("buy-and-hold", bh))}
    result = EvaluationResult(
        agent=performance_metrics(eq, periods_per_year=ppy, n_trades=sum(f.agent.n_trades for f in folds),
                                  fees_usd=sum(f.agent.fees_usd for f in folds), costs=_summed_costs(folds)),
        buy_and_hold=performance_metrics(bh, periods_per_year=ppy, n_trades=sum(f.buy_and_hold.n_trades for f in folds),
                                         fees_usd=sum(f.buy_and_hold.fees_usd for f in folds),
                                         costs=_summed_costs(folds, "buy_and_hold")),
        bar_ts=ts, equity_usd=eq, buy_and_hold_equity_usd=bh,
        position_frac=np.concatenate([folds[0].position_frac[:1]] + [f.position_frac[1:] for f in folds]),
        observations=np.concatenate([f.observations for f in folds]),
        actions=np.concatenate([f.actions for f in folds]),
        target_fracs=np.concatenate([f.target_fracs for f in folds]),
        periods_per_year=ppy, agent_stats=stats["agent"], buy_and_hold_stats=stats["buy-and-hold"],
        asset_return=np.concatenate([f.asset_return for f in folds if f.asset_return is not None]),
    )
    held = np.concatenate([f.position_frac[:-1] for f in folds])  # each fold's own steps, starting flat
    if result.asset_return is not None and held.size == result.asset_return.size >= 2:
        result.timing_null = shift_null(held, result.asset_return, seed=seed)
    return result


def _summed_costs(folds: list[EvaluationResult], curve: str = "agent") -> dict[str, float]:
    """Sum fees, impact and funding of one curve over folds; cost_bps weighted by each fold's traded notional."""
    m = [getattr(f, curve) for f in folds]
    paid = [x.fees_usd + x.impact_usd for x in m]
    traded = sum(p / x.cost_bps * 1e4 for p, x in zip(paid, m, strict=True) if x.cost_bps > 0)
    return {"cost_bps": sum(paid) / traded * 1e4 if traded > 0 else 0.0, "fees_usd": sum(x.fees_usd for x in m),
            "impact_usd": sum(x.impact_usd for x in m), "funding_usd": sum(x.funding_usd for x in m)}
