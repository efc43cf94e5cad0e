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
from typing import Any

import polars as pl
from loguru import logger
from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from quantnb.config import StageParams
from quantnb.data import read_bars
from quantnb.display import result_html
from quantnb.errors import ConfigError
from quantnb.rl._train_types import EnvSpec, SacParams, nest_flat_params  # light: pydantic only
from quantnb.runlog import start_run
from quantnb.stages._labelled import drop_empty_columns

__all__ = ["AgentParams", "AgentResult", "run_agent", "load_bars"]


_HEADLINE = {  # run.json metrics name -> evaluation metric
    "return_frac": "total_return_frac", "sharpe": "sharpe_annualised", "max_drawdown_frac": "max_drawdown_frac",
    "bh_return_frac": "bh_total_return_frac", "bh_max_drawdown_frac": "bh_max_drawdown_frac",
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

    from quantnb.rl import (
        ActionInterpreter,
        AgentMetadata,
        ClassifierSignal,
        FeatureScaler,
        ObservationBuilder,
        TradingEnv,
        compute_features,
        evaluate_agent,
        save_agent_bundle,
        train_sac,
    )

    with start_run(params) as ctx:
        torch.set_num_threads(params.num_threads)
        bars = load_bars(ctx.root, params.bars_glob)
        split_ts = bars["ts"].max() - dt.timedelta(days=params.eval_days)
        if bars.filter(pl.col("ts") < split_ts).height < params.env.window * 10:
            raise ConfigError(f"eval_days={params.eval_days} leaves under {params.env.window * 10} training bars")
        env = params.env
        symbol = bars["symbol"][0] if "symbol" in bars.columns else Path(params.bars_glob).parent.name
        feats = compute_features(bars, warmup_bars=env.warmup_bars)
        classifier, clf_dir = None, None
        if params.classifier_train_id:
            clf_dir = ctx.root / "runs" / params.classifier_train_id / "model"
            classifier = ClassifierSignal.load(clf_dir)
            if classifier.seq_len >= env.warmup_bars:
                raise ConfigError(f"classifier_train_id={params.classifier_train_id!r}: its seq_len "
                                  f"{classifier.seq_len} must be below warmup_bars={env.warmup_bars}")
            feats = feats.hstack(classifier.batch(bars).drop("ts"))
        names = [c for c in feats.columns if c != "ts"]
        scaler = FeatureScaler.fit(feats.filter(pl.col("ts") < split_ts), names, clip_sigma=env.feature_clip_sigma)
        logger.info("Bars {} .. {}; training before {}, evaluation after; {} features: {}",
                    bars["ts"].min(), bars["ts"].max(), split_ts, len(names), ", ".join(names))
        env_kw: dict[str, Any] = dict(
            observation_builder=ObservationBuilder(names, env.window, scaler, state_clip=env.state_clip),
            action_interpreter=ActionInterpreter(env.max_position_frac, env.deadband_frac),
            features=feats, initial_equity_usd=env.initial_equity_usd, warmup_bars=env.warmup_bars,
            **env.cost_setup(symbol))  # fees, spread, impact, venue rules, funding, margin: one cost model
        train_env = TradingEnv(bars, **env_kw, end_ts=split_ts, max_episode_steps=env.max_episode_steps,
                               random_start=True)
        sac = params.sac
        ctx.set_total(params.total_timesteps // params.checkpoint_every_steps)
        ctx.set_shard_retention(keep_last=1)  # the rolling checkpoint deletes older ones by design

        def on_checkpoint(info: Any) -> None:
            item = f"step-{info.num_timesteps}"
            ctx.batch_saved(info.num_timesteps // params.checkpoint_every_steps, 1, info.num_timesteps,
                            info.model_path)
            ctx.checkpoint.mark_completed(item)
            ctx.item_done(item, events=info.num_timesteps)

        trained = train_sac(train_env, sac, total_timesteps=params.total_timesteps,
                            checkpoint_dir=ctx.run_dir / "checkpoints",
                            checkpoint_every_steps=params.checkpoint_every_steps, resume=ctx.resumed,
                            progress_every_steps=params.progress_every_steps,
                            on_checkpoint=on_checkpoint)  # rl/steps lines: DEBUG, once
        eval_env = TradingEnv(bars, **env_kw, start_ts=split_ts)
        plot = ctx.root / "debug_plots" / ctx.run_id / "equity_curve.png"
        ev = evaluate_agent(trained.model, eval_env, plot_path=plot)
        metrics = ev.metrics_dict()
        flat = ev.flat_metrics()
        table = ev.summary_frame()
        if params.baseline_agent_id:
            table = _with_baseline(table, ctx.root / "runs" / params.baseline_agent_id, str(split_ts))
        for line in table.iter_rows(named=True):  # e.g. "eval total_return_frac: agent -0.01571 | buy_and_hold 0.07263"
            logger.info("eval {}: {}", line["metric"], " | ".join(
                _fmt_metric(k, v) for k, v in line.items() if k != "metric"))
        meta = AgentMetadata(
            env=env, sac=sac, timeframe="1m",
            symbol=symbol,
            data_span={"train": [str(bars["ts"].min()), str(split_ts)], "eval": [str(split_ts), str(bars["ts"].max())]},
            params=params.model_dump(mode="json", exclude=set(params.execution_fields)), metrics=metrics,
            feature_names=tuple(names),
            classifier={} if classifier is None else {"train_id": params.classifier_train_id,
                                                      "seq_len": classifier.seq_len})
        bundle = save_agent_bundle(ctx.run_dir, trained.model, scaler, meta, classifier_dir=clf_dir)
        logger.success("Agent bundle written to {} (train_id={})", bundle, ctx.run_id)
        ctx.add_output("bundle", bundle)
        ctx.add_output("equity_plot", plot)
        ctx.set_result(train_id=ctx.run_id, eval_start=str(split_ts), **flat)
        ctx.record_metrics(**{k: flat.get(v) for k, v in _HEADLINE.items()})
    return AgentResult(ctx.run_id, Path(bundle), metrics, plot, table)


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
    col = pl.Series("baseline_agent", [float(base[m]) if m in base else None for m in table["metric"]], pl.Float64)
    return table.select("metric", "agent").with_columns(col).hstack(table.select("buy_and_hold"))
