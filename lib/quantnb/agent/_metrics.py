"""Performance metrics and the evaluation result (shared by :mod:`._evaluate` and :mod:`._plot`)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from quantnb.errors import ConfigError
from quantnb.evaluation import SharpeReport, ShiftNull

MINUTES_PER_YEAR = 525_600  # 365 * 24 * 60: crypto trades around the clock


@dataclass(frozen=True)
class PerformanceMetrics:
    """Performance of an equity curve: ``total_return_frac = gross_return_frac - (cost_usd + funding_usd) / equity[0]``.

    ``sharpe_annualised`` is ``mean(r) / std(r, ddof=1) * sqrt(periods_per_year)`` of per-bar simple
    returns, 0.0 when flat (i.i.d. scaling: Lo, "The Statistics of Sharpe Ratios", 2002);
    ``max_drawdown_frac`` is ``max_t (1 - equity_t / max_{s<=t} equity_s)``; ``cost_bps`` is fees and
    impact per traded notional; ``impact_usd`` is the fills against their reference prices (spread,
    slippage, impact, tick rounding); ``funding_usd`` < 0 is received. Over stitched folds the USD
    figures are the folds' own, so ``gross_return_frac`` is their sum, approximately.
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
    cost_usd: float = 0.0
    gross_return_frac: float = 0.0


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
    c = {k: float(v) for k, v in (costs or {}).items() if k in ("cost_bps", "impact_usd", "funding_usd")}
    net = float(eq[-1] / eq[0] - 1.0)
    cost = float(fees_usd) + c.get("impact_usd", 0.0)
    return PerformanceMetrics(
        total_return_frac=net,
        sharpe_annualised=sharpe,
        max_drawdown_frac=float(drawdown.max()),
        n_trades=int(n_trades),
        fees_usd=float(fees_usd),
        n_steps=int(eq.size - 1),
        **c,
        cost_usd=cost,
        gross_return_frac=net + (cost + c.get("funding_usd", 0.0)) / float(eq[0]),
    )


@dataclass
class EvaluationResult:
    """Outcome of :func:`evaluate_agent`.

    Attributes
    ----------
    agent, buy_and_hold : PerformanceMetrics
        Buy-and-hold buys the instrument with all of ``initial_equity_usd`` at the first decision
        bar's close, paying the agent's fee and slippage (no closing fill: marked like the agent).
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
    agent_stats, buy_and_hold_stats : SharpeReport or None
        Every figure's uncertainty (bootstrap CIs, daily Sharpe, PSR, DSR with ``n_trials``,
        minimum track-record length) and a verdict sentence; None only when built by hand.
    asset_return : np.ndarray or None, shape (n_steps,), float64
        The instrument's close-to-close return over each step.
    timing_null : ShiftNull or None
        The agent's gross return against its own positions circularly shifted (same exposure and
        turnover, timing destroyed): ``p_value`` of its timing.
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
    agent_stats: SharpeReport | None = None
    buy_and_hold_stats: SharpeReport | None = None
    asset_return: np.ndarray | None = None
    timing_null: ShiftNull | None = None

    def _stats(self) -> list[tuple[str, PerformanceMetrics, SharpeReport | None]]:
        return [("agent", self.agent, self.agent_stats), ("buy_and_hold", self.buy_and_hold, self.buy_and_hold_stats)]

    def _rows(self, perf: PerformanceMetrics, stats: SharpeReport | None) -> dict[str, Any]:
        row: dict[str, Any] = asdict(perf)
        if stats is not None:
            row.update({k: v for k, v in stats.to_dict().items() if k in _STAT_ROWS})
        return row

    def verdicts(self) -> list[str]:
        """Return one sentence per curve: whether its result is distinguishable from zero.

        Returns
        -------
        list of str
            Empty when the uncertainty was not computed.
        """
        out = [s.verdict for _, _, s in self._stats() if s is not None]
        n = self.timing_null
        if n is not None:
            skill = "beats" if n.p_value < 0.05 else "does not beat"
            out.append(f"timing: the agent's positions earn {n.gross_return_frac:+.2%} before costs (sum of position x "
                       f"bar return, not compounded) and {skill} the same positions shifted in time (mean "
                       f"{n.null_mean:+.2%}, p = {n.p_value:.3f}, {n.n_shifts} shifts).")
        flat = self.flat_null()
        if flat is not None:
            out.append(self.cost_line())
            out.append(flat["verdict"])
        return out

    def cost_line(self) -> str:
        """Return one sentence: gross return, costs, funding and net return of the agent and of buy-and-hold."""
        e0 = float(self.equity_usd[0])

        def part(name: str, m: PerformanceMetrics) -> str:
            return (f"{name} gross {m.gross_return_frac:+.2%} - costs {m.cost_usd / e0:.2%} ({m.fees_usd:,.2f} USD "
                    f"fees + {m.impact_usd:,.2f} USD spread and impact) - funding {m.funding_usd / e0:+.2%} "
                    f"= net {m.total_return_frac:+.2%}")

        return f"costs: {part('agent', self.agent)}; {part('buy-and-hold', self.buy_and_hold)}."

    def flat_null(self) -> dict[str, Any] | None:
        """Compare the agent with staying flat throughout (return 0, no trades, no fees).

        The difference is the agent's own net return, so its bootstrap interval
        (``agent_stats.return_ci_low`` .. ``return_ci_high``) decides whether trading beat doing nothing
        after costs.

        Returns
        -------
        dict or None
            ``total_return_frac``, ``sharpe_annualised``, ``max_drawdown_frac``, ``n_trades``, ``fees_usd`` of
            the flat book (all 0), ``agent_minus_flat_return_frac``, ``diff_ci_low``, ``diff_ci_high`` and a
            ``verdict`` sentence; None when the uncertainty was not computed.
        """
        s = self.agent_stats
        if s is None:
            return None
        diff = self.agent.total_return_frac
        ci = f"{s.ci_level:.0%} CI [{s.return_ci_low:+.2%}, {s.return_ci_high:+.2%}]"
        words = ("beats" if s.return_ci_low > 0 else "loses to" if s.return_ci_high < 0
                 else "is not distinguishable from")
        verdict = (f"always-flat: the agent's net return {diff:+.2%} ({ci}, after {self.agent.fees_usd:,.2f} USD "
                   f"fees) {words} staying flat (0 %, no fees).")
        return {"total_return_frac": 0.0, "sharpe_annualised": 0.0, "max_drawdown_frac": 0.0, "n_trades": 0,
                "fees_usd": 0.0, "agent_minus_flat_return_frac": diff, "diff_ci_low": s.return_ci_low,
                "diff_ci_high": s.return_ci_high, "verdict": verdict}

    def summary_frame(self) -> pl.DataFrame:
        """Return the metrics table.

        Returns
        -------
        polars.DataFrame
            One row per metric, columns ``metric``, ``agent``, ``buy_and_hold`` (Float64, null
            where a figure does not exist, e.g. the daily Sharpe of under 2 days): the
            performance, then the uncertainty rows (``sharpe_ci_low`` ... ``n_trials``).
        """
        a, b = (self._rows(p, s) for _, p, s in self._stats())
        return pl.DataFrame(
            {"metric": list(a), "agent": [_num(v) for v in a.values()], "buy_and_hold": [_num(b[k]) for k in a]},
            schema={"metric": pl.String, "agent": pl.Float64, "buy_and_hold": pl.Float64},
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

    def flat_metrics(self) -> dict[str, float | None]:
        """Return the metrics as one flat mapping.

        Returns
        -------
        dict of str to float
            ``{"total_return_frac": ..., ..., "bh_total_return_frac": ..., ...}`` (agent, then buy-and-hold).
        """
        a, b = (self._rows(p, s) for _, p, s in self._stats())
        out = {k: _num(v) for k, v in a.items()}
        out.update({f"bh_{k}": _num(v) for k, v in b.items()})
        if self.timing_null is not None:
            out["timing_p_value"] = self.timing_null.p_value
            out["timing_gross_return_frac"] = self.timing_null.gross_return_frac
        return out

    def metrics_dict(self) -> dict[str, Any]:
        """Return the metrics nested by curve.

        Returns
        -------
        dict
            ``{"agent": {...}, "buy_and_hold": {...}, "always_flat": {...}}`` (the last with the
            uncertainty only, see :meth:`flat_null`) of plain floats and ints (for YAML/JSON), each
            with its uncertainty fields and ``verdict`` when computed.
        """
        out: dict[str, Any] = {}
        for name, perf, stats in self._stats():
            out[name] = {**asdict(perf), **(stats.to_dict() if stats is not None else {})}
        if self.timing_null is not None:
            out["agent"]["timing_null"] = asdict(self.timing_null)
        flat = self.flat_null()
        if flat is not None:
            out["always_flat"] = flat
        return out


_STAT_ROWS = ("sharpe_ci_low", "sharpe_ci_high", "sharpe_daily_annualised", "return_ci_low", "return_ci_high", "psr",
              "dsr", "n_trials", "min_track_record_days")


def _num(v: Any) -> float | None:
    return None if v is None else float(v)
