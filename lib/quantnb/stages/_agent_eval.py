"""The agent stage's evaluation protocol: spans (one split or walk-forward), trial registry, leak check, tables."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import polars as pl

from quantnb.agent import MINUTES_PER_YEAR
from quantnb.errors import ConfigError
from quantnb.evaluation import mean_ci, walk_forward_splits
from quantnb.runs import list_runs, read_run_record, run_dir

Span = tuple[dt.datetime | None, dt.datetime, dt.datetime, dt.datetime | None]  # train start/end, test start/end


def last_ts(bars: pl.DataFrame) -> dt.datetime:
    """Return the last bar's time (polars types a column's max as any scalar)."""
    return cast(dt.datetime, bars["ts"].max())


def agent_spans(bars: pl.DataFrame, *, eval_days: float, window: int, warmup_bars: int, walk_forward_folds: int = 0,
                walk_forward_mode: Literal["anchored", "rolling"] = "anchored",
                walk_forward_embargo_min: int = 60) -> list[Span]:
    """Return (train_start, train_end, test_start, test_end) per fold: one split, or the walk-forward."""
    # walk-forward: k + 1 blocks after the warm-up (evaluation.walk_forward_splits); fold i tests block i + 1,
    # trains on the past (anchored: all earlier blocks, rolling: block i) ending embargo minutes before;
    # a reward ends at the next bar's close, so a label ends at ts + 1 min. ConfigError under 10 * window bars
    ts = bars["ts"]
    if not walk_forward_folds:
        split_ts = last_ts(bars) - dt.timedelta(days=eval_days)
        if bars.filter(pl.col("ts") < split_ts).height < window * 10:
            raise ConfigError(f"eval_days={eval_days} leaves under {window * 10} training bars")
        return [(None, split_ts, split_ts, None)]
    t0 = ts.to_numpy()[warmup_bars:].astype("datetime64[us]")
    t1 = t0 + np.timedelta64(1, "m")
    folds = walk_forward_splits(t0, t1, n_folds=walk_forward_folds, mode=walk_forward_mode,
                                embargo=dt.timedelta(minutes=walk_forward_embargo_min))
    out: list[Span] = []
    for k, f in enumerate(folds):
        if f.train.size < window * 10:
            raise ConfigError(f"walk_forward_folds={walk_forward_folds}: fold {k} trains on {f.train.size} "
                              f"bars, under {window * 10}; use fewer folds or more data")
        start = None if walk_forward_mode == "anchored" else _py(t0[f.train[0]])
        out.append((start, _py(t1[f.train[-1]]), _py(f.test_start), _py(f.test_end)))
    return out


def _py(t: np.datetime64) -> dt.datetime:
    return dt.datetime.fromisoformat(str(t.astype("datetime64[us]"))).replace(tzinfo=dt.UTC)


_SEED_METRICS = ("total_return_frac", "sharpe_annualised", "sharpe_daily_annualised", "psr", "dsr", "max_drawdown_frac",
                 "bh_total_return_frac", "timing_p_value")


def seed_summary(seeds: list[int], evaluations: list[Any]) -> pl.DataFrame:
    """Return each metric per seed (``seed_<s>``) with its mean, sd and 95 % t-interval across seeds."""
    flats = [e.flat_metrics() for e in evaluations]
    rows = []
    for m in _SEED_METRICS:
        values = [f.get(m) for f in flats]
        known = [float(v) for v in values if v is not None]
        ci = mean_ci(np.array(known)) if len(known) >= 2 else (None, None, None, None)
        rows.append({"metric": m, **{f"seed_{s}": v for s, v in zip(seeds, values, strict=True)},
                     "mean": ci[0], "sd": ci[1], "ci_low": ci[2], "ci_high": ci[3]})
    return pl.DataFrame(rows, infer_schema_length=None)


_COST_METRICS = {"gross_return_frac": "gross_return_frac", "cost_usd": "cost_usd", "fees_usd": "fees_usd",
                 "impact_usd": "impact_usd", "cost_bps": "cost_bps", "funding_usd": "funding_usd",
                 "net_return_frac": "total_return_frac"}


def cost_metrics(flat: dict[str, Any]) -> dict[str, Any]:
    """Return gross return, costs, funding and net return of the agent and buy-and-hold (``bh_``)."""
    return {f"{p}{k}": flat.get(f"{p}{v}") for p in ("", "bh_") for k, v in _COST_METRICS.items()}


def _seed_metrics(table: pl.DataFrame) -> dict[str, Any]:
    """Return the across-seed mean and CI of return and Sharpe, for run.json metrics."""
    out: dict[str, Any] = {}
    for row in table.iter_rows(named=True):
        if row["metric"] in ("total_return_frac", "sharpe_annualised"):
            out[row["metric"]] = {k: row[k] for k in ("mean", "sd", "ci_low", "ci_high")}
    return out


def _fold_table(spans: list[Span], evs: list[Any], fold_ids: list[int] | None = None) -> pl.DataFrame:
    """One row per walk-forward fold: spans, the agent's return and Sharpe with its CI, buy-and-hold's."""
    rows = []
    ids = fold_ids if fold_ids is not None else list(range(len(spans)))
    for k, (t0, t1, s0, s1), ev in zip(ids, spans, evs, strict=True):
        a = ev.agent_stats
        rows.append({"fold": k, "train_start": str(t0) if t0 else None, "train_end": str(t1), "test_start": str(s0),
                     "test_end": str(s1), "return_frac": ev.agent.total_return_frac,
                     "sharpe": ev.agent.sharpe_annualised, "sharpe_ci_low": a.sharpe_ci_low if a else None,
                     "sharpe_ci_high": a.sharpe_ci_high if a else None, "n_trades": ev.agent.n_trades,
                     "bh_return_frac": ev.buy_and_hold.total_return_frac})
    return pl.DataFrame(rows, infer_schema_length=None)


def earlier_trial_sharpes(root: Path, bars_glob: str, eval_start: str, *, exclude: str | None = None) -> list[float]:
    """Return the annualised Sharpe (NaN if unrecorded) of each trial on the same bars and span."""
    # the deflated Sharpe's trial registry: completed agent runs with the same bars_glob and eval_start,
    # each seed a trial
    out: list[float] = []
    for summary in list_runs(root, stage="agent", status="completed"):
        rec = read_run_record(run_dir(root, summary.run_id), detect_dead=False) or {}
        results, parameters = rec.get("results") or {}, rec.get("parameters") or {}
        if summary.run_id == exclude or results.get("eval_start") != eval_start or \
                parameters.get("bars_glob") != bars_glob:
            continue
        per_seed = results.get("trial_sharpes_annualised")  # one per seed
        sharpes = per_seed if isinstance(per_seed, list) and per_seed else [results.get("sharpe_annualised")]
        out.extend(float(x) if isinstance(x, int | float) else float("nan") for x in sharpes)
    return out


def _trial_sharpe_var(annualised: list[float], n_eval_bars: int) -> float | None:
    """Variance of the trials' per-bar Sharpes, floored at the estimation noise ``1/(n-1)``; None under 2 known."""
    known = np.array([x for x in annualised if np.isfinite(x)]) / np.sqrt(MINUTES_PER_YEAR)  # 1-minute bars
    if known.size < 2:
        return None
    return max(float(known.var(ddof=1)), 1.0 / max(n_eval_bars - 1, 1))


def _utc(value: Any) -> dt.datetime:
    t = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def check_no_stacking_leak(
    classifier_metadata: dict[str, Any], classifier_id: str, eval_start: dt.datetime, eval_end: dt.datetime
) -> None:
    """Refuse (ConfigError) a classifier whose train..val + lookahead reaches the evaluation span."""
    # it was fitted on train and chosen (Optuna, early stopping) on val: an agent judged there would leak
    span = classifier_metadata.get("data_span") or {}
    try:
        start, val_end = _utc(span["train"]["start"]), _utc(span["val"]["end"])
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"classifier_train_id={classifier_id!r}: its config_metadata.yaml records no usable "
                          f"data_span train/val ({e!r}), so a stacking leak into the agent's evaluation cannot be "
                          "ruled out; retrain it with the training stage, which records the spans") from e
    reach = val_end + dt.timedelta(minutes=float(classifier_metadata.get("lookahead_min") or 0))
    ev0, ev1 = _utc(eval_start), _utc(eval_end)
    overlap_h = (min(reach, ev1) - max(start, ev0)).total_seconds() / 3600.0
    if overlap_h >= 0:
        raise ConfigError(
            f"classifier_train_id={classifier_id!r}: its train + validation span {start.isoformat()} .. "
            f"{reach.isoformat()} (validation end plus the {classifier_metadata.get('lookahead_min') or 0} min label "
            f"horizon) overlaps the agent's evaluation span {ev0.isoformat()} .. {ev1.isoformat()} by "
            f"{overlap_h:.1f} hours: the agent would be judged on data its classifier was fitted and selected on. "
            "Train the classifier (and its optimization) with a smaller train_frac + val_frac so that its test span "
            "covers the evaluation, or shorten eval_days")
