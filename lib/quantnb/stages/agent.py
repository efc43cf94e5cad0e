"""Agent stage: a stable-baselines3 SAC agent trained on the gymnasium trading environment.

Bars before the last ``eval_days`` train the agent; the last ``eval_days`` are held out for
evaluation (against buy-and-hold) and, in the demo, for the live notebook's replay. The run
directory ``runs/<run_id>/`` becomes the agent bundle (``config_metadata.yaml``, ``scaler.json``,
``sac_model.zip``): the live notebook needs nothing else. Checkpoints (model and replay buffer)
are written atomically every ``checkpoint_every_steps``; ``resume=True`` continues from the last.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import polars as pl
from loguru import logger
from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from quantnb.config import StageParams
from quantnb.data import read_bars
from quantnb.display import result_html
from quantnb.errors import ConfigError
from quantnb.rl._metrics import MINUTES_PER_YEAR
from quantnb.rl._train_types import EnvSpec, SacParams, nest_flat_params  # light: pydantic only
from quantnb.runlog import list_runs, read_run_record, start_run
from quantnb.stages._labelled import drop_empty_columns

__all__ = ["AgentParams", "AgentResult", "run_agent", "load_bars"]


_HEADLINE = {  # run.json metrics name -> evaluation metric
    "return_frac": "total_return_frac", "sharpe": "sharpe_annualised", "max_drawdown_frac": "max_drawdown_frac",
    "bh_return_frac": "bh_total_return_frac", "bh_max_drawdown_frac": "bh_max_drawdown_frac",
    "sharpe_ci_low": "sharpe_ci_low", "sharpe_ci_high": "sharpe_ci_high", "sharpe_daily": "sharpe_daily_annualised",
    "return_ci_low": "return_ci_low", "return_ci_high": "return_ci_high", "psr": "psr", "dsr": "dsr",
    "n_trials": "n_trials", "min_track_record_days": "min_track_record_days", "bh_sharpe": "bh_sharpe_annualised",
    "bh_sharpe_ci_low": "bh_sharpe_ci_low", "bh_sharpe_ci_high": "bh_sharpe_ci_high", "bh_psr": "bh_psr",
    "timing_p_value": "timing_p_value",
}


class AgentParams(StageParams):
    """Parameters of the agent stage: data split and training length, plus ``sac`` and ``env``.

    The SAC hyper-parameters are a :class:`SacParams` and the environment an
    :class:`EnvSpec`, stored verbatim in the bundle. Flat names (``buffer_size``, ``window``,
    as the notebook and ``quantnb run -p`` give them) are moved into ``sac`` / ``env`` by
    :func:`quantnb.rl.nest_flat_params`, the one place they are mapped; a flat value of None
    leaves the class default (``buffer_size`` 100,000 and ``learning_starts`` 1,000: SacParams').
    """

    stage = "agent"
    bars_glob: str = Field("data/processed/unknown/perp/BTC-PERP/*.parquet",
                           description="ETL Parquet bars of one instrument (<venue>/<market>/<SYMBOL>/).")
    eval_days: PositiveFloat = Field(7.0, description="The last days held out for evaluation (and live replay).")
    total_timesteps: PositiveInt = Field(5_000, description="Environment steps to train.")
    checkpoint_every_steps: PositiveInt = Field(1_000, description="Checkpoint model and replay buffer this often.")
    progress_every_steps: PositiveInt = Field(500, description="A progress line this often.")
    num_threads: PositiveInt = Field(1, description="torch threads; one is fastest for these small networks.")
    classifier_train_id: str | None = Field(
        None, description="Training run whose classifier (runs/<id>/model) adds its class probabilities to the "
                          "observation; None: market features only.")
    baseline_agent_id: str | None = Field(
        None, description="An earlier agent run (e.g. the same agent without classifier) whose evaluation joins the "
                          "table as a column, next to this agent and buy-and-hold; None: no such column.")
    walk_forward_folds: int = Field(
        0, ge=0, description="Walk-forward folds over all bars (each trains on the past only and tests on the next "
                             "block; the stitched out-of-sample curve is reported); 0: one split, the last eval_days.")
    walk_forward_mode: Literal["anchored", "rolling"] = Field(
        "anchored", description="Walk-forward training window: every earlier block, or the previous one only.")
    walk_forward_embargo_min: PositiveInt = Field(60, description="Minutes between a fold's training and its test.")
    seeds: list[NonNegativeInt] | None = Field(
        None, min_length=1, description="Train and evaluate once per seed (overrides sac.seed): mean, sd and 95 % CI "
                                        "of each metric across seeds; the bundle is the first seed's. None: sac.seed.")
    sac: SacParams = Field(default_factory=SacParams, description="SAC hyper-parameters.")
    env: EnvSpec = Field(default_factory=EnvSpec, description="Trading environment (window, fees, position).")

    @classmethod
    def flat_names(cls) -> frozenset[str]:
        """Return the flat parameter names accepted besides the fields (those of SacParams and EnvSpec).

        Returns
        -------
        frozenset of str
        """
        return frozenset(SacParams.model_fields) | frozenset(EnvSpec.model_fields)

    @model_validator(mode="before")
    @classmethod
    def _nest(cls, values: Any) -> Any:
        return nest_flat_params(values) if isinstance(values, dict) else values

    @model_validator(mode="after")
    def _steps_fit_the_run(self) -> AgentParams:
        steps = {"checkpoint_every_steps": self.checkpoint_every_steps, "learning_starts": self.sac.learning_starts}
        problems = [f"{n}={v} > total_timesteps={self.total_timesteps}: set {n} <= total_timesteps"
                    for n, v in steps.items() if v > self.total_timesteps]
        if self.sac.batch_size > self.sac.buffer_size:
            problems.append(f"batch_size={self.sac.batch_size} > buffer_size={self.sac.buffer_size}: "
                            "set batch_size <= buffer_size")
        if problems:
            raise ValueError("\n  - ".join(problems))
        return self

    def run_suffix(self) -> str:
        """Return the symbol, training length and classifier use, e.g. ``BTC-PERP_5000steps``.

        Returns
        -------
        str
        """
        clf = "_clf" if self.classifier_train_id else ""
        return f"{Path(self.bars_glob).parent.name}_{self.total_timesteps}steps{clf}"


@dataclasses.dataclass
class AgentResult:
    """The trained agent's evaluation and where its bundle went (``train_id`` = run id)."""

    train_id: str
    bundle_dir: Path
    metrics: dict[str, Any]
    equity_plot: Path
    table: pl.DataFrame
    verdicts: list[str] = dataclasses.field(default_factory=list)
    folds: pl.DataFrame | None = None
    seeds: pl.DataFrame | None = None

    def _repr_html_(self) -> str:  # noqa: D105 (the notebook's display of the result)
        return result_html(self)

    def summary(self) -> pl.DataFrame:
        """Print where the bundle is; return the evaluation table.

        Returns
        -------
        polars.DataFrame
            ``metric``, ``agent``, optionally ``baseline_agent``, and ``buy_and_hold``.
        """
        print(f"Agent bundle {self.bundle_dir} (train_id={self.train_id}); equity curve {self.equity_plot}")
        for line in self.verdicts:
            print(line)
        if self.folds is not None:
            print(self.folds)
        if self.seeds is not None:
            print(self.seeds)
        return self.table


def load_bars(root: Path, bars_glob: str) -> pl.DataFrame:
    """Read the ETL bars matching ``bars_glob`` (see :func:`quantnb.data.read_bars`), empty columns dropped.

    Parameters
    ----------
    root : Path
        Project root the glob is relative to.
    bars_glob : str
        Glob of the Parquet bar files of one symbol.

    Returns
    -------
    polars.DataFrame
        In time order, checked (:func:`quantnb.data.check_bars`).

    Raises
    ------
    ConfigError
        If nothing matches, a match is not a readable regular file, or the bars are of
        several instruments.
    DataError
        If a file is unreadable or the bars are not a clean minute series.
    """
    bars = read_bars(bars_glob, root=root)  # refuses several instruments
    return drop_empty_columns(bars)


def run_agent(params: AgentParams) -> AgentResult:
    """Train (or resume) the SAC agent, evaluate it on the held-out days, export the bundle.

    Parameters
    ----------
    params : AgentParams
        The stage's parameters (``sac``, ``env``, optional ``classifier_train_id``).

    Returns
    -------
    AgentResult
        Run id, bundle directory, metrics and the agent-versus-buy-and-hold table.

    Raises
    ------
    ConfigError
        Missing bars or classifier bundle, or a held-out period leaving too little training data.
    DataError
        If the bars are not a clean minute series.
    """
    # heavy: imported by the run, not by the runner's parameter validation
    import torch

    from quantnb.rl import AgentMetadata, ClassifierSignal, compute_features, save_agent_bundle
    from quantnb.rl._evaluate import stitch_evaluations

    with start_run(params) as ctx:
        torch.set_num_threads(params.num_threads)
        bars = load_bars(ctx.root, params.bars_glob)
        env = params.env
        spans = agent_spans(bars, params)
        eval_start = spans[0][2]
        feats = compute_features(bars, warmup_bars=env.warmup_bars)
        classifier, clf_dir = None, None
        if params.classifier_train_id:
            clf_dir = ctx.root / "runs" / params.classifier_train_id / "model"
            classifier = ClassifierSignal.load(clf_dir)
            if classifier.seq_len >= env.warmup_bars:
                raise ConfigError(f"classifier_train_id={params.classifier_train_id!r}: its seq_len "
                                  f"{classifier.seq_len} must be below warmup_bars={env.warmup_bars}")
            check_no_stacking_leak(classifier.bundle.metadata, params.classifier_train_id, eval_start,
                                   bars["ts"].max())
            feats = feats.hstack(classifier.batch(bars).drop("ts"))
        names = [c for c in feats.columns if c != "ts"]
        logger.info("Bars {} .. {}; {} features: {}", bars["ts"].min(), bars["ts"].max(), len(names),
                    ", ".join(names))
        earlier = earlier_trial_sharpes(ctx.root, params.bars_glob, str(eval_start), exclude=ctx.run_id)
        trial_var = _trial_sharpe_var(earlier, bars.filter(pl.col("ts") >= eval_start).height)
        seeds = list(params.seeds or [params.sac.seed])
        n_trials = len(earlier) + len(seeds)
        logger.info("{} earlier agent run(s) evaluated on this span and {} seed(s): n_trials={} for the deflated "
                    "Sharpe", len(earlier), len(seeds), n_trials)
        ctx.set_total(params.total_timesteps // params.checkpoint_every_steps * len(spans) * len(seeds))
        ctx.set_shard_retention(keep_last=1)  # the rolling checkpoint deletes older ones by design
        plot = ctx.root / "debug_plots" / ctx.run_id / "equity_curve.png"
        per_seed = []
        for i, seed in enumerate(seeds):
            sac = params.sac.model_copy(update={"seed": seed})
            where = _Where(seed if len(seeds) > 1 else None, None, i * len(spans))
            fits = [_fit_and_evaluate(ctx, params, sac, bars, feats, names, span,
                                      where._replace(fold=k if len(spans) > 1 else None, index=where.index + k),
                                      n_trials=n_trials, trial_var=trial_var) for k, span in enumerate(spans)]
            if len(fits) == 1:
                ev = fits[0][2]
            else:
                ev = stitch_evaluations([f[2] for f in fits], n_trials=n_trials, trial_sharpe_var=trial_var,
                                        seed=seed)
                for line in ev.verdicts():
                    logger.info("eval/verdict {}", line)
            per_seed.append((fits, ev))
        fits, ev = per_seed[0]  # the bundle and the table: the first seed's
        trained, scaler, _ = fits[-1]
        _plot(ev, plot)
        metrics = ev.metrics_dict()
        flat = ev.flat_metrics()
        table = ev.summary_frame()
        fold_table = _fold_table(spans, [f[2] for f in fits]) if len(fits) > 1 else None
        if fold_table is not None:
            metrics["walk_forward"] = {"folds": fold_table.to_dicts(), "mode": params.walk_forward_mode,
                                       "embargo_min": params.walk_forward_embargo_min}
        seed_table = seed_summary(seeds, [e for _, e in per_seed]) if len(seeds) > 1 else None
        if seed_table is not None:
            metrics["seeds"] = seed_table.to_dicts()
            logger.info("Across {} seeds:\n{}", len(seeds), seed_table)
        if params.baseline_agent_id:
            table = _with_baseline(table, ctx.root / "runs" / params.baseline_agent_id, str(eval_start))
        for line in table.iter_rows(named=True):  # e.g. "eval total_return_frac: agent -0.01571 | buy_and_hold 0.07263"
            logger.info("eval {}: {}", line["metric"], " | ".join(
                _fmt_metric(k, v) for k, v in line.items() if k != "metric"))
        train_start, train_end, last_start, last_end = spans[-1]
        meta = AgentMetadata(
            env=env, sac=params.sac, timeframe="1m",
            symbol=bars["symbol"][0] if "symbol" in bars.columns else Path(params.bars_glob).parent.name,
            data_span={"train": [str(train_start), str(train_end)], "eval": [str(last_start), str(last_end)]},
            params=params.model_dump(mode="json", exclude=set(params.execution_fields)), metrics=metrics,
            feature_names=tuple(names),
            classifier={} if classifier is None else {"train_id": params.classifier_train_id,
                                                      "seq_len": classifier.seq_len})
        bundle = save_agent_bundle(ctx.run_dir, trained.model, scaler, meta, classifier_dir=clf_dir)
        logger.success("Agent bundle written to {} (train_id={})", bundle, ctx.run_id)
        ctx.add_output("bundle", bundle)
        ctx.add_output("equity_plot", plot)
        ctx.set_result(train_id=ctx.run_id, eval_start=str(eval_start), **flat,
                       trial_sharpes_annualised=[e.agent.sharpe_annualised for _, e in per_seed],
                       **({"walk_forward_folds": fold_table.to_dicts()} if fold_table is not None else {}))
        ctx.record_metrics(**{k: flat.get(v) for k, v in _HEADLINE.items()})
        ctx.record_metrics(verdict=" ".join(ev.verdicts()),
                           **({"walk_forward_folds": len(fits)} if fold_table is not None else {}),
                           **({"seeds": _seed_metrics(seed_table)} if seed_table is not None else {}))
    return AgentResult(ctx.run_id, Path(bundle), metrics, plot, table, ev.verdicts(), fold_table, seed_table)


Span = tuple[dt.datetime | None, dt.datetime, dt.datetime, dt.datetime | None]  # train start/end, test start/end


def agent_spans(bars: pl.DataFrame, params: AgentParams) -> list[Span]:
    """Return the training and evaluation spans: one split, or the walk-forward folds.

    Without walk-forward, training takes the bars before the last ``eval_days`` and evaluation the
    rest. With ``walk_forward_folds = k``, the decision bars after the warm-up are cut into
    ``k + 1`` blocks (:func:`quantnb.evaluation.walk_forward_splits`); fold ``i`` evaluates on block
    ``i + 1`` and trains on the past only (``anchored``: every earlier block, ``rolling``: block
    ``i``), its last training mark ``walk_forward_embargo_min`` minutes and more before the test.
    A decision's reward ends at the next bar's close, so the label end time is ``ts + 1 min``.

    Parameters
    ----------
    bars : polars.DataFrame
        The instrument's 1-minute bars, ``ts`` ascending.
    params : AgentParams
        ``eval_days`` or ``walk_forward_folds`` / ``walk_forward_mode`` / ``walk_forward_embargo_min``.

    Returns
    -------
    list of (train_start or None, train_end, test_start, test_end or None)
        None: from the first bar / to the last one.

    Raises
    ------
    ConfigError
        If a training span would hold fewer than ``10 * window`` bars.
    """
    from quantnb.evaluation import walk_forward_splits

    ts = bars["ts"]
    if not params.walk_forward_folds:
        split_ts = ts.max() - dt.timedelta(days=params.eval_days)
        if bars.filter(pl.col("ts") < split_ts).height < params.env.window * 10:
            raise ConfigError(f"eval_days={params.eval_days} leaves under {params.env.window * 10} training bars")
        return [(None, split_ts, split_ts, None)]
    t0 = ts.to_numpy()[params.env.warmup_bars:].astype("datetime64[us]")
    t1 = t0 + np.timedelta64(1, "m")
    folds = walk_forward_splits(t0, t1, n_folds=params.walk_forward_folds, mode=params.walk_forward_mode,
                                embargo=dt.timedelta(minutes=params.walk_forward_embargo_min))
    out: list[Span] = []
    for k, f in enumerate(folds):
        if f.train.size < params.env.window * 10:
            raise ConfigError(f"walk_forward_folds={params.walk_forward_folds}: fold {k} trains on {f.train.size} "
                              f"bars, under {params.env.window * 10}; use fewer folds or more data")
        start = None if params.walk_forward_mode == "anchored" else _py(t0[f.train[0]])
        out.append((start, _py(t1[f.train[-1]]), _py(f.test_start), _py(f.test_end)))
    return out


def _py(t: np.datetime64) -> dt.datetime:
    return dt.datetime.fromisoformat(str(t.astype("datetime64[us]"))).replace(tzinfo=dt.UTC)


class _Where(NamedTuple):
    seed: int | None  # None: the only seed
    fold: int | None  # None: one split
    index: int  # 0-based position among every (seed, fold) fit, for progress


def _fit_and_evaluate(ctx: Any, params: AgentParams, sac: SacParams, bars: pl.DataFrame, feats: pl.DataFrame,
                      names: list[str], span: Span, at: _Where, *, n_trials: int,
                      trial_var: float | None) -> tuple[Any, Any, Any]:
    """Fit the scaler and SAC on the span's training bars, evaluate on its test bars: (trained, scaler, evaluation)."""
    from quantnb.rl import (
        ActionInterpreter,
        FeatureScaler,
        FillModel,
        ObservationBuilder,
        TradingEnv,
        evaluate_agent,
        train_sac,
    )

    train_start, train_end, test_start, test_end = span
    env = params.env
    rows = pl.col("ts") < train_end
    scaler = FeatureScaler.fit(feats.filter(rows if train_start is None else rows & (pl.col("ts") >= train_start)),
                               names, clip_sigma=env.feature_clip_sigma)
    where = "".join(f"{n} {v}: " for n, v in (("seed", at.seed), ("fold", at.fold)) if v is not None)
    logger.info("{}training {} .. {}, evaluation {} .. {}", where, train_start or bars["ts"].min(), train_end,
                test_start, test_end or bars["ts"].max())
    env_kw: dict[str, Any] = dict(
        observation_builder=ObservationBuilder(names, env.window, scaler, state_clip=env.state_clip),
        action_interpreter=ActionInterpreter(env.max_position_frac, env.deadband_frac),
        fill_model=FillModel(env.fee_bps, env.slippage_bps), features=feats,
        initial_equity_usd=env.initial_equity_usd, warmup_bars=env.warmup_bars)
    train_env = TradingEnv(bars, **env_kw, start_ts=train_start, end_ts=train_end,
                           max_episode_steps=env.max_episode_steps, random_start=True)
    per_fold = params.total_timesteps // params.checkpoint_every_steps
    tag = "".join(f"{n}{v}-" for n, v in (("seed", at.seed), ("fold", at.fold)) if v is not None)

    def on_checkpoint(info: Any) -> None:
        item = f"{tag}step-{info.num_timesteps}"
        done = at.index * per_fold + info.num_timesteps // params.checkpoint_every_steps
        ctx.batch_saved(done, 1, info.num_timesteps, info.model_path)
        ctx.checkpoint.mark_completed(item)
        ctx.item_done(item, events=info.num_timesteps)

    ckpt = ctx.run_dir / "checkpoints"
    ckpt = ckpt if at.seed is None else ckpt / f"seed_{at.seed}"
    ckpt = ckpt if at.fold is None else ckpt / f"fold_{at.fold}"
    trained = train_sac(train_env, sac, total_timesteps=params.total_timesteps, checkpoint_dir=ckpt,
                        checkpoint_every_steps=params.checkpoint_every_steps, resume=ctx.resumed,
                        progress_every_steps=params.progress_every_steps,
                        on_checkpoint=on_checkpoint)  # rl/steps lines: DEBUG, once
    eval_env = TradingEnv(bars, **env_kw, start_ts=test_start, end_ts=test_end)
    ev = evaluate_agent(trained.model, eval_env, n_trials=n_trials, trial_sharpe_var=trial_var, seed=sac.seed)
    return trained, scaler, ev


_SEED_METRICS = ("total_return_frac", "sharpe_annualised", "sharpe_daily_annualised", "psr", "dsr", "max_drawdown_frac",
                 "bh_total_return_frac", "timing_p_value")


def seed_summary(seeds: list[int], evaluations: list[Any]) -> pl.DataFrame:
    """Return each metric per seed with its mean, sd and 95 % t-interval across seeds.

    Parameters
    ----------
    seeds : list of int
        The seeds, in the order of ``evaluations``.
    evaluations : list of EvaluationResult
        One per seed (stitched over the folds under walk-forward).

    Returns
    -------
    polars.DataFrame
        Columns ``metric``, ``seed_<s>`` for each seed, ``mean``, ``sd``, ``ci_low``, ``ci_high`` (Float64).
    """
    from quantnb.evaluation import mean_ci

    flats = [e.flat_metrics() for e in evaluations]
    rows = []
    for m in _SEED_METRICS:
        values = [f.get(m) for f in flats]
        known = [float(v) for v in values if v is not None]
        ci = mean_ci(np.array(known)) if len(known) >= 2 else (None, None, None, None)
        rows.append({"metric": m, **{f"seed_{s}": v for s, v in zip(seeds, values, strict=True)},
                     "mean": ci[0], "sd": ci[1], "ci_low": ci[2], "ci_high": ci[3]})
    return pl.DataFrame(rows, infer_schema_length=None)


def _seed_metrics(table: pl.DataFrame) -> dict[str, Any]:
    """Return the across-seed mean and CI of return and Sharpe, for run.json metrics."""
    out: dict[str, Any] = {}
    for row in table.iter_rows(named=True):
        if row["metric"] in ("total_return_frac", "sharpe_annualised"):
            out[row["metric"]] = {k: row[k] for k in ("mean", "sd", "ci_low", "ci_high")}
    return out


def _plot(ev: Any, path: Path) -> None:
    from quantnb.rl import plot_equity_curve

    plot_equity_curve(ev, path)


def _fold_table(spans: list[Span], evs: list[Any]) -> pl.DataFrame:
    """One row per walk-forward fold: spans, the agent's return and Sharpe with its CI, buy-and-hold's."""
    rows = []
    for k, ((t0, t1, s0, s1), ev) in enumerate(zip(spans, evs, strict=True)):
        a = ev.agent_stats
        rows.append({"fold": k, "train_start": str(t0) if t0 else None, "train_end": str(t1), "test_start": str(s0),
                     "test_end": str(s1), "return_frac": ev.agent.total_return_frac,
                     "sharpe": ev.agent.sharpe_annualised, "sharpe_ci_low": a.sharpe_ci_low if a else None,
                     "sharpe_ci_high": a.sharpe_ci_high if a else None, "n_trades": ev.agent.n_trades,
                     "bh_return_frac": ev.buy_and_hold.total_return_frac})
    return pl.DataFrame(rows, infer_schema_length=None)


def _fmt_metric(name: str, value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return f"{name} {value:,.0f}"  # counts: 10,080 steps, not 1.008e+04
    return f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}"


def _with_baseline(table: pl.DataFrame, bundle_dir: Path, eval_start: str) -> pl.DataFrame:
    """Insert the baseline agent's evaluation metrics as column ``baseline_agent`` (before buy-and-hold)."""
    from quantnb.rl import load_agent_bundle  # heavy (stable-baselines3): not at module import

    meta = load_agent_bundle(bundle_dir).metadata
    base = meta.metrics.get("agent") or {}
    if meta.data_span.get("eval", [None])[0] != eval_start:
        logger.warning("baseline agent {} was evaluated from {}, this agent from {}: the columns are not comparable",
                       bundle_dir.name, meta.data_span.get("eval", [None])[0], eval_start)
    col = pl.Series("baseline_agent", [float(base[m]) if base.get(m) is not None else None for m in table["metric"]],
                    pl.Float64)
    return table.select("metric", "agent").with_columns(col).hstack(table.select("buy_and_hold"))


def earlier_trial_sharpes(root: Path, bars_glob: str, eval_start: str, *, exclude: str | None = None) -> list[float]:
    """Return the annualised Sharpe of every trial (run and seed) of completed agent runs on the same bars and span.

    The trial registry of the deflated Sharpe: runs listed by :func:`quantnb.runlog.list_runs`
    (what ``quantnb runs`` shows) whose run.json has the same ``bars_glob`` parameter and
    ``eval_start`` result. A run without a recorded Sharpe counts as a trial with an unknown Sharpe (NaN).

    Parameters
    ----------
    root : Path
        Project root.
    bars_glob : str
        The bars the agent was evaluated on.
    eval_start : str
        First evaluation bar, as the stage records it (``str(split_ts)``).
    exclude : str, optional
        A run id not to count (the current run).

    Returns
    -------
    list of float
        One annualised Sharpe per earlier trial, each seed of a run with ``seeds`` counted (NaN where not
        recorded).
    """
    out: list[float] = []
    for summary in list_runs(root, stage="agent", status="completed"):
        rec = read_run_record(root / "runs" / summary.run_id, detect_dead=False) or {}
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
    """Refuse a classifier whose training or validation data reaches the agent's evaluation span.

    The classifier was fitted on its train span and selected (Optuna objective, early stopping,
    best checkpoint) on its validation span; labels look ``lookahead_min`` past each bar. If that
    reach, ``[train start, validation end + lookahead]``, overlaps the agent's evaluation span, the
    agent is judged on data its classifier was chosen on: a stacking leak.

    Parameters
    ----------
    classifier_metadata : dict
        The classifier bundle's ``config_metadata.yaml`` (``data_span`` with ``train`` and ``val``
        ``start`` / ``end`` ISO times, and ``lookahead_min``), as the training stage writes it.
    classifier_id : str
        Its training run id, for the message.
    eval_start, eval_end : datetime.datetime
        The agent's evaluation span (UTC; naive means UTC).

    Raises
    ------
    ConfigError
        Naming both spans and the overlap in hours, or saying that the bundle records no span.
    """
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
