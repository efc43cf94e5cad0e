"""Agent stage: a stable-baselines3 SAC agent trained on the gymnasium trading environment.

Bars before the last ``eval_days`` train the agent; the last ``eval_days`` are held out for
evaluation (against buy-and-hold). With ``walk_forward_folds`` the agent is trained and tested per
fold instead, and with a classifier as well, the classifier is retrained per fold on purged past
labels so that the agent only ever sees out-of-fold probabilities (:mod:`quantnb.stages._agent_folds`). The run
directory ``runs/<run_id>/`` becomes the agent bundle (``config_metadata.yaml``, ``scaler.json``,
``sac_model.zip``): the live notebook needs nothing else. Checkpoints (model and replay buffer)
are written atomically every ``checkpoint_every_steps``; ``resume=True`` continues from the last.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any, Literal, NamedTuple

import polars as pl
from loguru import logger
from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from quantnb.agent import EnvSpec, SacParams, nest_flat_params
from quantnb.config import StageParams
from quantnb.data import read_bars
from quantnb.display import HtmlResult
from quantnb.errors import ConfigError
from quantnb.runs import atomic_path, checkpoints_dir, model_dir, record_test_spans, run_dir, start_run
from quantnb.stages._agent_eval import (
    Span,
    _fold_table,
    _seed_metrics,
    _trial_sharpe_var,
    agent_spans,
    check_no_stacking_leak,
    cost_metrics,
    earlier_trial_sharpes,
    last_ts,
    seed_summary,
)
from quantnb.stages._agent_folds import PROVENANCE_COLUMN, PROVENANCE_FILE, build_stacking, stacked_spans

__all__ = ["AgentParams", "AgentResult", "run_agent", "load_bars"]


_HEADLINE = {  # run.json metrics name -> evaluation metric
    "return_frac": "total_return_frac", "sharpe": "sharpe_annualised", "max_drawdown_frac": "max_drawdown_frac",
    "bh_return_frac": "bh_total_return_frac", "bh_max_drawdown_frac": "bh_max_drawdown_frac",
    "sharpe_ci_low": "sharpe_ci_low", "sharpe_ci_high": "sharpe_ci_high", "sharpe_daily": "sharpe_daily_annualised",
    "return_ci_low": "return_ci_low", "return_ci_high": "return_ci_high", "psr": "psr", "dsr": "dsr",
    "min_track_record_days": "min_track_record_days", "bh_sharpe": "bh_sharpe_annualised",
    "bh_sharpe_ci_low": "bh_sharpe_ci_low", "bh_sharpe_ci_high": "bh_sharpe_ci_high", "bh_psr": "bh_psr",
    "timing_p_value": "timing_p_value",
}


class AgentParams(StageParams):
    """Parameters of the agent stage: data split and training length, plus ``sac`` and ``env``.

    The SAC hyper-parameters are a :class:`SacParams` and the environment an
    :class:`EnvSpec`, stored verbatim in the bundle. Flat names (``buffer_size``, ``window``,
    as the notebook and ``quantnb run -p`` give them) are moved into ``sac`` / ``env`` by
    :func:`quantnb.agent.nest_flat_params`, the one place they are mapped; a flat value of None
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
    walk_forward_skip_folds: NonNegativeInt = Field(
        0, description="Leave out the first folds (not trained, not evaluated). With a classifier, fold 0 is always "
                       "left out (its training block has no out-of-fold probability): give the plain agent 1 to "
                       "compare the same blocks.")
    walk_forward_holdout_days: NonNegativeFloat = Field(
        0.0, description="Walk-forward only: the last days kept out of every fold, the live replay's default span; "
                         "0: the folds use every bar and the replay says it replays data the agent was selected on.")
    classifier_epochs: PositiveInt | None = Field(
        None, description="Walk-forward with a classifier: cap on the epochs of each per-fold retraining; None: the "
                          "training run's epochs.")
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
        k = self.walk_forward_folds
        if k and self.walk_forward_skip_folds >= k:
            problems.append(f"walk_forward_skip_folds={self.walk_forward_skip_folds} leaves none of the "
                            f"walk_forward_folds={k}: set it below {k}")
        if k == 1 and self.classifier_train_id:
            problems.append("walk_forward_folds=1 with classifier_train_id: fold 0 has no out-of-fold classifier "
                            "probability to train on; use walk_forward_folds >= 2")
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
class AgentResult(HtmlResult):
    """The trained agent's evaluation and where its bundle went (``train_id`` = run id)."""

    train_id: str
    bundle_dir: Path
    metrics: dict[str, Any]
    equity_plot: Path
    table: pl.DataFrame
    verdicts: list[str] = dataclasses.field(default_factory=list)
    folds: pl.DataFrame | None = None
    seeds: pl.DataFrame | None = None
    tear_sheet: Path | None = None
    data_span: dict[str, list[str]] | None = None  # {"train": [start, end], "eval": [start, end]}, UTC

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
    """Read the ETL bars matching ``bars_glob`` (:func:`quantnb.data.read_bars`): one instrument, checked.

    Parameters
    ----------
    root : Path
        Project root the glob is relative to.
    bars_glob : str
        Glob of the Parquet bar files of one symbol.

    Raises
    ------
    ConfigError, DataError
        As :func:`quantnb.data.read_bars`: nothing matches, several instruments, not a clean minute series.
    """
    return read_bars(bars_glob, root=root)  # refuses several instruments, drops empty columns


def run_agent(params: AgentParams) -> AgentResult:
    """Train (or resume) the SAC agent, evaluate it on the held-out days, export the bundle.

    With ``walk_forward_folds`` and ``classifier_train_id`` (walk-forward stacking), the
    classifier is retrained for every block ``j >= 1`` on the labels whose ``t1`` ends
    ``walk_forward_embargo_min`` before the block (AFML ch. 7) and gives that block's
    probabilities only; block 0 has none, so the folds start at fold 1 (training from block 1).
    The bundle carries the model that learnt from every label ending before the bars after the
    walk-forward (``walk_forward_holdout_days``), else the last block's.

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
        Missing bars or classifier bundle, a held-out period leaving too little training data, a
        classifier whose spans reach the evaluation, or (stacking) a block with too few earlier labels.
    DataError
        If the bars are not a clean minute series.

    Examples
    --------
    >>> params = AgentParams(bars_glob="data/processed/bybit/linear/BTCUSDT/*.parquet", total_timesteps=5_000)
    >>> result = run_agent(params)
    >>> result.summary()  # agent versus buy-and-hold on the held-out days
    """
    # heavy: imported by the run, not by the runner's parameter validation
    import torch

    from quantnb.agent import (
        CLASSIFIER_FEATURES,
        AgentMetadata,
        ClassifierSignal,
        compute_features,
        save_agent_bundle,
        stitch_evaluations,
    )

    with start_run(params) as ctx:
        torch.set_num_threads(params.num_threads)
        bars = load_bars(ctx.root, params.bars_glob)
        env = params.env
        wf_bars, after_eval = _holdout(bars, params)
        all_spans = agent_spans(wf_bars, eval_days=params.eval_days, window=env.window, warmup_bars=env.warmup_bars,
                                walk_forward_folds=params.walk_forward_folds,
                                walk_forward_mode=params.walk_forward_mode,
                                walk_forward_embargo_min=params.walk_forward_embargo_min)
        fold_ids = list(range(len(all_spans)))[params.walk_forward_skip_folds:]
        spans = all_spans[params.walk_forward_skip_folds:]
        feats = compute_features(bars, warmup_bars=env.warmup_bars)
        classifier, clf_dir, stack = None, None, None
        if params.classifier_train_id:
            clf_dir = model_dir(run_dir(ctx.root, params.classifier_train_id))
            classifier = ClassifierSignal.load(clf_dir)
            if classifier.seq_len >= env.warmup_bars:
                raise ConfigError(f"classifier_train_id={params.classifier_train_id!r}: its seq_len "
                                  f"{classifier.seq_len} must be below warmup_bars={env.warmup_bars}")
            if params.walk_forward_folds:  # walk-forward stacking: one classifier per block, out-of-fold
                stack = _stacking(ctx, params, bars, all_spans, clf_dir, after_eval)
                fold_ids = list(range(len(all_spans)))[max(params.walk_forward_skip_folds, 1):]
                spans = stacked_spans(all_spans, mode=params.walk_forward_mode)[max(params.walk_forward_skip_folds,
                                                                                    1) - 1:]
                feats = feats.hstack(stack.probabilities.select(CLASSIFIER_FEATURES))
                clf_dir, classifier = stack.live.directory, ClassifierSignal.load(stack.live.directory)
            else:
                check_no_stacking_leak(classifier.bundle.metadata, params.classifier_train_id, spans[0][2],
                                       last_ts(bars))
                feats = feats.hstack(classifier.batch(bars).drop("ts"))
        eval_start = spans[0][2]
        names = [c for c in feats.columns if c != "ts"]
        logger.info("Bars {} .. {}; {} features: {}", bars["ts"].min(), bars["ts"].max(), len(names),
                    ", ".join(names))
        earlier = earlier_trial_sharpes(ctx.root, params.bars_glob, str(eval_start), exclude=ctx.run_id)
        trial_var = _trial_sharpe_var(earlier, bars.filter(pl.col("ts") >= eval_start).height)
        seeds = list(params.seeds or [params.sac.seed])
        record_test_spans(ctx, [(s[2], s[3] or bars["ts"].max()) for s in spans], instrument=_symbol(params, bars),
                          what=[f"agent fold {k}" for k in fold_ids])
        n_trials = len(earlier) + len(seeds)
        logger.info("{} earlier agent run(s) evaluated on this span and {} seed(s): n_trials={} for the deflated "
                    "Sharpe", len(earlier), len(seeds), n_trials)
        ctx.set_total(params.total_timesteps // params.checkpoint_every_steps * len(spans) * len(seeds))
        ctx.set_shard_retention(keep_last=1)  # the rolling checkpoint deletes older ones by design
        plot = ctx.paths.debug_plots / "equity_curve.png"
        per_seed = []
        for i, seed in enumerate(seeds):
            sac = params.sac.model_copy(update={"seed": seed})
            where = _Where(seed if len(seeds) > 1 else None, None, i * len(spans))
            fits = [_fit_and_evaluate(ctx, params, sac, bars, feats, names, span,
                                      where._replace(fold=fold_ids[k] if len(spans) > 1 else None,
                                                     position=where.position + k),
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
        sheet, sheet_png = _tear_sheet(ctx, fits, ev, per_seed, seeds, fold_ids)
        metrics = ev.metrics_dict()
        flat = ev.flat_metrics()
        table = ev.summary_frame()
        fold_table = _fold_table(spans, [f[2] for f in fits], fold_ids) if len(fits) > 1 else None
        if fold_table is not None:
            metrics["walk_forward"] = {"folds": fold_table.to_dicts(), "mode": params.walk_forward_mode,
                                       "embargo_min": params.walk_forward_embargo_min}
        if stack is not None:
            metrics.update(_stacking_metrics(stack))
        seed_table = seed_summary(seeds, [e for _, e in per_seed]) if len(seeds) > 1 else None
        if seed_table is not None:
            metrics["seeds"] = seed_table.to_dicts()
            logger.info("Across {} seeds:\n{}", len(seeds), seed_table)
        if params.baseline_agent_id:
            table = _with_baseline(table, run_dir(ctx.root, params.baseline_agent_id), str(eval_start))
        # the table, row by row, to the session log only (the notebook renders it once, as a table)
        for line in table.iter_rows(named=True):  # e.g. "eval total_return_frac: agent -0.01571 | buy_and_hold 0.07263"
            logger.debug("eval {}: {}", line["metric"], " | ".join(
                _fmt_metric(k, v) for k, v in line.items() if k != "metric"))
        train_start, train_end, last_start, last_end = spans[-1]
        meta = AgentMetadata(
            env=env, sac=params.sac.model_copy(update={"seed": seeds[0]}), timeframe="1m",
            symbol=_symbol(params, bars),
            data_span={"train": [str(train_start or bars["ts"].min()), str(train_end)],
                       "eval": [str(last_start), str(last_end or bars["ts"].max())],
                       **({"after_eval": after_eval} if after_eval else {})},
            params=params.model_dump(mode="json", exclude=set(params.execution_fields)), metrics=metrics,
            feature_names=tuple(names),
            classifier={} if classifier is None else {
                "train_id": params.classifier_train_id, "seq_len": classifier.seq_len,
                **({"oof": True, "model_id": stack.live.model_id, "data_span": stack.live.span}
                   if stack is not None else {})})
        bundle = save_agent_bundle(ctx.run_dir, trained.model, scaler, meta, classifier_dir=clf_dir)
        logger.success("Agent bundle written to {} (train_id={})", bundle, ctx.run_id)
        ctx.add_output("bundle", bundle)
        ctx.add_output("equity_plot", plot)
        ctx.add_output("tear_sheet", sheet_png)
        ctx.set_result(train_id=ctx.run_id, eval_start=str(eval_start), **flat,
                       trial_sharpes_annualised=[e.agent.sharpe_annualised for _, e in per_seed],
                       **({"walk_forward_folds": fold_table.to_dicts()} if fold_table is not None else {}))
        ctx.record_metrics(**{k: flat.get(v) for k, v in _HEADLINE.items()}, n_trials=n_trials)
        ctx.record_metrics(**cost_metrics(flat))  # gross return, costs, funding, net: agent and buy-and-hold
        verdicts = [*ev.verdicts(), *_size_verdict(params, len(fits))]
        ctx.record_metrics(verdict=" ".join(verdicts),
                           **({"walk_forward_folds": len(fits)} if fold_table is not None else {}),
                           **(_stacking_metrics(stack) if stack is not None else {}),
                           **({"seeds": _seed_metrics(seed_table)} if seed_table is not None else {}),
                           tear_sheet=sheet)
    return AgentResult(ctx.run_id, Path(bundle), metrics, plot, table, verdicts, fold_table, seed_table,
                       sheet_png, meta.data_span)


def _holdout(bars: pl.DataFrame, params: AgentParams) -> tuple[pl.DataFrame, list[str] | None]:
    """Return the walk-forward's bars and the span after them ([first, last] bar, ISO) kept for the live replay."""
    if not params.walk_forward_folds or not params.walk_forward_holdout_days:
        return bars, None
    cut = last_ts(bars) - dt.timedelta(days=params.walk_forward_holdout_days)
    rest = bars.filter(pl.col("ts") > cut)
    if rest.height < 2 or bars.height - rest.height < params.env.warmup_bars:
        raise ConfigError(f"walk_forward_holdout_days={params.walk_forward_holdout_days} leaves {rest.height} "
                          f"bars after the walk-forward and {bars.height - rest.height} in it; shorten it")
    # the last fold's final mark is the close of the walk-forward's last bar + 1 min: the span starts after it
    after = rest.slice(1)
    return bars.filter(pl.col("ts") <= cut), [str(after["ts"].min()), str(after["ts"].max())]


def _stacking(ctx: Any, params: AgentParams, bars: pl.DataFrame, spans: list[Span], clf_dir: Path,
              after_eval: list[str] | None) -> Any:
    """Train (or, resumed, load) the per-block classifiers; save the provenance of every probability."""
    from quantnb.classifier import load_model_bundle  # heavy (torch): not at module import

    def on_model(m: Any) -> None:
        ctx.checkpoint.mark_completed(f"classifier-{m.model_id}")
        check_no_stacking_leak(load_model_bundle(m.directory).metadata, f"{ctx.run_id}/{m.model_id}",
                               m.cutoff + dt.timedelta(minutes=params.walk_forward_embargo_min), last_ts(bars))

    live = dt.datetime.fromisoformat(after_eval[0]) if after_eval else None
    stack = build_stacking(ctx.root, ctx.run_dir, clf_dir, bars, spans, embargo_min=params.walk_forward_embargo_min,
                           epochs=params.classifier_epochs, resume=ctx.resumed, live_start=live, on_model=on_model)
    with atomic_path(ctx.run_dir / "classifiers" / PROVENANCE_FILE) as tmp:
        stack.probabilities.select("ts", PROVENANCE_COLUMN).write_parquet(tmp)
    logger.info("Walk-forward stacking: {} classifiers, each giving the probabilities of its block only; "
                "block 0 has none, so fold 0 is left out; the bundle carries {}", len(stack.models),
                stack.live.model_id)
    return stack


def _stacking_metrics(stack: Any) -> dict[str, Any]:
    return {"classifier_oof": True, "classifier_models": [m.record() for m in stack.models],
            "classifier_live": stack.live.record()}


_SKILL_STEPS = 100_000  # SAC's benchmarks train 1e5 to 1e6 steps (Haarnoja et al., "Soft Actor-Critic", 2018)


def _size_verdict(params: AgentParams, n_folds: int) -> list[str]:
    """Say so when the training is far too short to show skill (the demo's sizing)."""
    if params.total_timesteps >= _SKILL_STEPS:
        return []
    return [f"size: {params.total_timesteps:,} SAC steps per fit ({n_folds} fold(s)) is sized for speed, not skill: "
            f"SAC is usually trained for 10^5-10^6 steps, so this run says nothing about an edge."]


def _symbol(params: AgentParams, bars: pl.DataFrame) -> str:
    """Return the instrument: the bars' ``symbol`` column, else the bars folder's name."""
    return bars["symbol"][0] if "symbol" in bars.columns else Path(params.bars_glob).parent.name


class _Where(NamedTuple):
    seed: int | None  # None: the only seed
    fold: int | None  # None: one split
    position: int  # 0-based among every (seed, fold) fit, for progress


def _fit_and_evaluate(ctx: Any, params: AgentParams, sac: SacParams, bars: pl.DataFrame, feats: pl.DataFrame,
                      names: list[str], span: Span, at: _Where, *, n_trials: int,
                      trial_var: float | None) -> tuple[Any, Any, Any]:
    """Fit the scaler and SAC on the span's training bars, evaluate on its test bars: (trained, scaler, evaluation)."""
    from quantnb.agent import FeatureScaler, evaluate_agent, make_env, train_sac

    train_start, train_end, test_start, test_end = span
    env = params.env
    rows = pl.col("ts") < train_end
    scaler = FeatureScaler.fit(feats.filter(rows if train_start is None else rows & (pl.col("ts") >= train_start)),
                               names, clip_sigma=env.feature_clip_sigma)
    where = "".join(f"{n} {v}: " for n, v in (("seed", at.seed), ("fold", at.fold)) if v is not None)
    logger.info("{}training {} .. {}, evaluation {} .. {}", where, train_start or bars["ts"].min(), train_end,
                test_start, test_end or bars["ts"].max())
    symbol = _symbol(params, bars)  # venue rules and margin tiers, where the spec sets a venue
    train_env = make_env(bars, env, scaler, feats, symbol=symbol, start_ts=train_start, end_ts=train_end,
                         max_episode_steps=env.max_episode_steps, random_start=True)
    per_fold = params.total_timesteps // params.checkpoint_every_steps
    tag = "".join(f"{n}{v}-" for n, v in (("seed", at.seed), ("fold", at.fold)) if v is not None)

    def on_checkpoint(info: Any) -> None:
        item = f"{tag}step-{info.num_timesteps}"
        done = at.position * per_fold + info.num_timesteps // params.checkpoint_every_steps
        ctx.batch_saved(done, 1, info.num_timesteps, info.model_path)
        ctx.checkpoint.mark_completed(item)
        ctx.item_done(item, events=info.num_timesteps)

    ckpt = checkpoints_dir(ctx.run_dir)
    ckpt = ckpt if at.seed is None else ckpt / f"seed_{at.seed}"
    ckpt = ckpt if at.fold is None else ckpt / f"fold_{at.fold}"
    trained = train_sac(train_env, sac, total_timesteps=params.total_timesteps, checkpoint_dir=ckpt,
                        checkpoint_every_steps=params.checkpoint_every_steps, resume=ctx.resumed,
                        progress_every_steps=params.progress_every_steps,
                        on_checkpoint=on_checkpoint)  # rl/steps lines: DEBUG, once
    eval_env = make_env(bars, env, scaler, feats, symbol=symbol, start_ts=test_start, end_ts=test_end)
    ev = evaluate_agent(trained.model, eval_env, n_trials=n_trials, trial_sharpe_var=trial_var, seed=sac.seed)
    return trained, scaler, ev


def _plot(ev: Any, path: Path) -> None:
    from quantnb.agent import plot_equity_curve

    plot_equity_curve(ev, path)


def _tear_sheet(ctx: Any, fits: list[Any], ev: Any, per_seed: list[Any], seeds: list[int],
                fold_ids: list[int]) -> tuple[dict, Path]:
    """Compute the tear sheet's data (for run.json metrics) and draw it to debug_plots/<run id>/tear_sheet.png."""
    from quantnb.agent import plot_tear_sheet, tear_sheet_data

    sheet = tear_sheet_data([f[2] for f in fits], ev, [e for _, e in per_seed], seeds, null_seed=seeds[0],
                            fold_ids=fold_ids if len(fits) > 1 else None)
    png = plot_tear_sheet(sheet, ctx.paths.debug_plots / "tear_sheet.png", title=ctx.run_id)
    return sheet, png


def _fmt_metric(name: str, value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return f"{name} {value:,.0f}"  # counts: 10,080 steps, not 1.008e+04
    return f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}"


def _with_baseline(table: pl.DataFrame, bundle_dir: Path, eval_start: str) -> pl.DataFrame:
    """Insert the baseline agent's evaluation metrics as column ``baseline_agent`` (before buy-and-hold)."""
    from quantnb.agent import load_agent_bundle  # heavy (stable-baselines3): not at module import

    meta = load_agent_bundle(bundle_dir).metadata
    base = meta.metrics.get("agent") or {}
    folds = (meta.metrics.get("walk_forward") or {}).get("folds") or []  # walk-forward: evaluated from its first fold
    base_start = folds[0].get("test_start") if folds else meta.data_span.get("eval", [None])[0]
    if base_start != eval_start:
        logger.warning("baseline agent {} was evaluated from {}, this agent from {}: the columns are not comparable",
                       bundle_dir.name, base_start, eval_start)
    col = pl.Series("baseline_agent", [float(base[m]) if base.get(m) is not None else None for m in table["metric"]],
                    pl.Float64)
    return table.select("metric", "agent").with_columns(col).hstack(table.select("buy_and_hold"))
