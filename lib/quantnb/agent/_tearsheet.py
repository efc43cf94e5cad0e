"""The agent's tear sheet: its figures' data as compact JSON, and one readable PNG drawn from that data."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import numpy as np

from quantnb.agent._metrics import EvaluationResult
from quantnb.errors import ConfigError
from quantnb.evaluation import return_moments, sharpe_std_error, shift_null_samples
from quantnb.runs import atomic_path

MAX_POINTS = 200  # per series in the JSON: enough for a readable line, small enough for run.json
NULL_BINS = 30
Z95 = 1.959964  # two-sided 95 % normal quantile


def _g(v: float) -> float:
    return float(f"{float(v):.6g}")  # 6 significant digits: compact JSON, plot-exact


def _pick(n: int, keep: int | None = None) -> np.ndarray:
    """Return at most MAX_POINTS evenly spaced indices of 0..n-1 (first, last and ``keep`` included)."""
    idx = np.linspace(0, n - 1, min(n, MAX_POINTS)).round().astype(np.int64)
    if keep is not None:
        idx = np.append(idx, keep)
    return np.unique(idx)


def _minutes(ts: list[dt.datetime], start: dt.datetime, idx: np.ndarray) -> list[int]:
    return [round((ts[int(i)] - start).total_seconds() / 60.0) for i in idx]


def _rolling_sharpe(r: np.ndarray, window: int) -> np.ndarray:
    """Per-bar Sharpe of each trailing ``window`` returns (index i: returns i-window+1 .. i; NaN before)."""
    c1, c2 = np.concatenate([[0.0], np.cumsum(r)]), np.concatenate([[0.0], np.cumsum(r * r)])
    s1, s2 = c1[window:] - c1[:-window], c2[window:] - c2[:-window]
    mean = s1 / window
    var = np.maximum(s2 - window * mean * mean, 0.0) / (window - 1)
    sd = np.sqrt(var)
    sr = np.divide(mean, sd, out=np.zeros_like(mean), where=sd > 1e-15)
    return np.concatenate([np.full(window - 1, np.nan), sr])


def tear_sheet_data(folds: list[EvaluationResult], stitched: EvaluationResult, seed_results: list[EvaluationResult],
                    seeds: list[int], *, null_seed: int, n_shifts: int = 999,
                    fold_ids: list[int] | None = None) -> dict[str, Any]:
    """Return the tear sheet's figures as a compact, JSON-ready dict (what :func:`plot_tear_sheet` draws).

    ``start``, ``folds`` (equity per fold, normalised to 1), ``drawdown``, ``rolling_sharpe`` (with the
    95 % band ``+- 1.96`` standard errors of Bailey & López de Prado 2012 eq. 3), ``seeds`` and
    ``shift_null``; at most 200 points per series.

    Parameters
    ----------
    folds : list of EvaluationResult
        Each walk-forward fold's held-out evaluation, in time order.
    stitched : EvaluationResult
        The folds chained (:func:`stitch_evaluations`).
    seed_results, seeds : list
        One evaluation per training seed, and those seeds.
    null_seed, n_shifts
        ``seed`` and ``n_shifts`` of :func:`quantnb.evaluation.shift_null_samples`.
    fold_ids : list of int, optional
        Fold labels; default 0, 1, ...

    Raises
    ------
    ConfigError
        If there is no fold, or ``seeds`` and ``seed_results`` differ in length.
    """
    if not folds or len(seeds) != len(seed_results):
        raise ConfigError(f"tear sheet: {len(folds)} fold(s), {len(seeds)} seed(s) for {len(seed_results)} "
                          "evaluation(s): give >= 1 fold and one evaluation per seed")
    start = stitched.bar_ts[0]
    out: dict[str, Any] = {"start": start.isoformat(), "folds": []}
    for k, f in enumerate(folds):
        idx = _pick(len(f.bar_ts))
        out["folds"].append({
            "fold": k if fold_ids is None else fold_ids[k], "minute": _minutes(f.bar_ts, start, idx),
            "agent": [_g(v) for v in f.equity_usd[idx] / f.equity_usd[0]],
            "buy_and_hold": [_g(v) for v in f.buy_and_hold_equity_usd[idx] / f.buy_and_hold_equity_usd[0]],
            "return_frac": _g(f.agent.total_return_frac), "bh_return_frac": _g(f.buy_and_hold.total_return_frac)})
    dd = {name: 1.0 - eq / np.maximum.accumulate(eq)
          for name, eq in (("agent", stitched.equity_usd), ("buy_and_hold", stitched.buy_and_hold_equity_usd))}
    idx = _pick(len(stitched.bar_ts), int(np.argmax(dd["agent"])))
    out["drawdown"] = {"minute": _minutes(stitched.bar_ts, start, idx),
                       **{k: [_g(v) for v in d[idx]] for k, d in dd.items()}}
    r = stitched.equity_usd[1:] / stitched.equity_usd[:-1] - 1.0
    fifth = r.size // 5
    window = 1440 if r.size >= 3 * 1440 else fifth // 60 * 60 if fifth >= 60 else max(10, fifth)  # whole hours
    if r.size > window:
        mom, ann = return_moments(r), math.sqrt(stitched.periods_per_year)
        sr = _rolling_sharpe(r, window)
        idx = _pick(r.size)
        idx = idx[idx >= window - 1]
        se = np.array([sharpe_std_error(float(sr[i]), window, mom.skew, mom.kurtosis) for i in idx])
        out["rolling_sharpe"] = {"window_bars": window, "level": 0.95,
                                 "minute": _minutes(stitched.bar_ts, start, idx + 1),  # the mark after return i
                                 "sharpe": [_g(v) for v in sr[idx] * ann],
                                 "band_low": [_g(v) for v in (sr[idx] - Z95 * se) * ann],
                                 "band_high": [_g(v) for v in (sr[idx] + Z95 * se) * ann]}
    out["seeds"] = {"seeds": list(seeds), "total_return_frac": [_g(e.agent.total_return_frac) for e in seed_results],
                    "sharpe_annualised": [_g(e.agent.sharpe_annualised) for e in seed_results],
                    "bh_total_return_frac": _g(stitched.buy_and_hold.total_return_frac)}
    held = np.concatenate([f.position_frac[:-1] for f in folds])  # each fold's own steps, as the evaluation
    ret = stitched.asset_return
    if ret is not None and held.size == ret.size >= 2:
        observed, null = shift_null_samples(held, ret, n_shifts=n_shifts, seed=null_seed)
        counts, edges = np.histogram(null, bins=NULL_BINS)
        p_value = (1 + (null >= observed).sum()) / (1 + null.size)
        out["shift_null"] = {"edges": [_g(v) for v in edges], "counts": counts.tolist(), "observed": _g(observed),
                             "p_value": _g(p_value), "n_shifts": int(null.size)}
    return out


def plot_tear_sheet(data: dict[str, Any], path: str | Path, *, title: str = "") -> Path:
    """Draw the tear sheet of :func:`tear_sheet_data` as one PNG (6 panels, 13 x 8 in at 100 dpi).

    Parameters
    ----------
    data : dict
        What :func:`tear_sheet_data` returned (or its JSON read back).
    path : str or pathlib.Path
        The PNG to write (atomically).
    title : str, default ""
        Figure title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    (ax_eq, ax_dd, ax_sr), (ax_fold, ax_seed, ax_null) = fig.subplots(2, 3)
    day = 1440.0
    start = data["start"][:16].replace("T", " ")
    for k, f in enumerate(data["folds"]):
        x = np.array(f["minute"]) / day
        if k % 2:
            ax_eq.axvspan(x[0], x[-1], color="grey", alpha=0.08, lw=0)
        ax_eq.plot(x, f["agent"], color="tab:blue", lw=1.2, label="agent" if k == 0 else None)
        name = f"fold {f['fold']}" if len(data["folds"]) > 1 else "held out"
        ax_eq.annotate(name, (x[0], 0.0), xytext=(3, 3), textcoords="offset points",
                       xycoords=("data", "axes fraction"), va="bottom", fontsize=8, color="dimgrey")
        ax_eq.plot(x, f["buy_and_hold"], color="tab:orange", lw=1.0, ls="--", label="buy and hold" if k == 0 else None)
    ax_eq.axhline(1.0, color="grey", lw=0.6)
    n_f = len(data["folds"])
    ax_eq.set(title=f"Equity per fold ({n_f} folds; each from 1)" if n_f > 1 else "Equity, held-out span (from 1)",
              ylabel="growth of 1",
              xlabel=f"days since {start} UTC")
    ax_eq.legend(loc="best", fontsize=9)
    d = data["drawdown"]
    x = np.array(d["minute"]) / day
    ax_dd.fill_between(x, -np.array(d["agent"]) * 100, 0, color="tab:blue", alpha=0.35, label="agent")
    ax_dd.plot(x, -np.array(d["buy_and_hold"]) * 100, color="tab:orange", lw=1.0, ls="--", label="buy and hold")
    ax_dd.set(title=f"Drawdown (agent max {max(d['agent']):.2%})", ylabel="% below running peak",
              xlabel=f"days since {start} UTC")
    ax_dd.legend(loc="lower left", fontsize=9)
    rs = data.get("rolling_sharpe")
    if rs:
        x = np.array(rs["minute"]) / day
        ax_sr.fill_between(x, rs["band_low"], rs["band_high"], color="tab:blue", alpha=0.2, label="95 % band")
        ax_sr.plot(x, rs["sharpe"], color="tab:blue", lw=1.2, label="agent")
        ax_sr.axhline(0.0, color="black", lw=0.8)
        ax_sr.legend(loc="best", fontsize=9)
        w = rs["window_bars"]
        span = f"{w // 1440} d" if w % 1440 == 0 else f"{w // 60} h" if w % 60 == 0 else f"{w} min"
        ax_sr.set(title=f"Rolling Sharpe, {span} window", ylabel="annualised", xlabel=f"days since {start} UTC")
    else:
        ax_sr.text(0.5, 0.5, "too few bars for a rolling Sharpe", ha="center", va="center",
                   transform=ax_sr.transAxes)
    folds = data["folds"]
    pos = np.arange(len(folds))
    ax_fold.bar(pos - 0.2, [f["return_frac"] * 100 for f in folds], 0.4, color="tab:blue", label="agent")
    ax_fold.bar(pos + 0.2, [f["bh_return_frac"] * 100 for f in folds], 0.4, color="tab:orange", label="buy and hold")
    ax_fold.axhline(0.0, color="black", lw=0.8)
    ax_fold.set_xticks(pos, labels=[f"fold {f['fold']}" if len(folds) > 1 else "held out" for f in folds])
    ax_fold.set_xlim(-1.0, len(folds))  # one fold: bars of a readable width, not the whole panel
    ax_fold.set(title="Return per fold (after fees)" if len(folds) > 1 else "Return (after fees)", ylabel="%")
    ax_fold.margins(y=0.3)  # room for the legend beyond the longest bar
    ax_fold.legend(loc="best", fontsize=9)
    s = data["seeds"]
    rets = np.array(s["total_return_frac"]) * 100
    ax_seed.scatter(np.zeros(rets.size) + np.linspace(-0.05, 0.05, rets.size), rets, color="tab:blue", zorder=3,
                    label=f"agent, {rets.size} seed{'s' if rets.size > 1 else ''}")
    for sd, v in zip(s["seeds"], rets, strict=True):
        ax_seed.annotate(f"seed {sd}", (0.08, v), fontsize=8, va="center")
    ax_seed.axhline(s["bh_total_return_frac"] * 100, color="tab:orange", ls="--", label="buy and hold")
    ax_seed.axhline(0.0, color="black", lw=0.8, label="always flat")
    if rets.size > 1:
        ax_seed.errorbar([-0.25], [rets.mean()], yerr=[[rets.mean() - rets.min()], [rets.max() - rets.mean()]],
                         fmt="s", color="tab:blue", capsize=4, label="mean, range")
    ax_seed.set_xlim(-0.6, 0.6)
    ax_seed.set_xticks([])
    ax_seed.set(title="Total return over seeds" + ("" if rets.size > 1 else " (one seed: give seeds: [...])"),
                ylabel="%")
    ax_seed.legend(loc="best", fontsize=8)
    n = data.get("shift_null")
    if n:
        edges = np.array(n["edges"]) * 100
        ax_null.stairs(n["counts"], edges, fill=True, color="grey", alpha=0.6, label=f"{n['n_shifts']} shifts")
        ax_null.axvline(n["observed"] * 100, color="tab:red", lw=2, label="agent")
        ax_null.set(title=f"Timing null: positions shifted, p = {n['p_value']:.3f}",
                    xlabel="gross return, % (no fees)", ylabel="shifts")
        ax_null.legend(loc="best", fontsize=9)
    for ax in (ax_eq, ax_dd, ax_sr, ax_fold, ax_seed, ax_null):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    dest = Path(path)
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")
    return dest
