"""Equity-curve plot of an evaluation (matplotlib, Agg canvas, no global pyplot state)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from quantnb.agent._metrics import EvaluationResult
from quantnb.runs import atomic_path


def plot_equity_curve(result: EvaluationResult, path: str | Path, *, title: str | None = None) -> Path:
    """Save the agent's and buy-and-hold's equity and the agent's position as a PNG; return ``path``.

    Parameters
    ----------
    result : EvaluationResult
        From :func:`evaluate_agent`.
    path : str or Path
        Destination PNG (parent directories created; written atomically).
    title : str, optional
        Figure title; default a one-line summary of the metrics.
    """
    a, b = result.agent, result.buy_and_hold
    fig = Figure(figsize=(11, 6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax_eq, ax_pos = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    ax_eq.plot(result.bar_ts, result.equity_usd, label=f"agent ({a.total_return_frac:+.2%})", lw=1.2)
    ax_eq.plot(
        result.bar_ts,
        result.buy_and_hold_equity_usd,
        label=f"buy and hold ({b.total_return_frac:+.2%})",
        lw=1.0,
        alpha=0.8,
    )
    ax_eq.set_ylabel("equity, USD")
    ax_eq.legend(loc="best")
    ax_eq.grid(alpha=0.3)
    ax_pos.plot(result.bar_ts, result.position_frac, lw=0.8, color="tab:green")
    ax_pos.axhline(0.0, color="grey", lw=0.5)
    ax_pos.set_ylabel("position / equity")
    ax_pos.grid(alpha=0.3)
    fig.suptitle(
        title
        or (
            f"Sharpe {a.sharpe_annualised:.2f} vs {b.sharpe_annualised:.2f} · max drawdown {a.max_drawdown_frac:.2%} "
            f"vs {b.max_drawdown_frac:.2%} · {a.n_trades} trade{'' if a.n_trades == 1 else 's'} · "
            f"fees {a.fees_usd:,.2f} USD"
        )
    )
    dest = Path(path)
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")
    return dest
