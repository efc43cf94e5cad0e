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
from typing import Any, Literal

import polars as pl
from loguru import logger
from pydantic import Field, PositiveFloat, PositiveInt

from quantnb.config import StageParams
from quantnb.display import result_html
from quantnb.errors import ConfigError
from quantnb.rl import (
    ActionInterpreter,
    AgentMetadata,
    FeatureScaler,
    FillModel,
    ObservationBuilder,
    SacParams,
    TradingEnv,
    compute_features,
    evaluate_agent,
    save_agent_bundle,
    train_sac,
)
from quantnb.runlog import start_run
from quantnb.stages._labelled import drop_empty_columns

__all__ = ["AgentParams", "AgentResult", "run_agent", "load_bars"]


class AgentParams(StageParams):
    """Parameters of the agent stage (environment, SAC hyper-parameters, evaluation split)."""

    stage = "agent"
    bars_glob: str = Field("data/processed/BTC-PERP/*.parquet", description="ETL Parquet bars of one symbol.")
    eval_days: PositiveFloat = Field(7.0, description="The last days held out for evaluation (and live replay).")
    window: PositiveInt = Field(32, description="Bars of scaled features in one observation.")
    fee_bps: float = Field(4.0, ge=0, description="Taker fee on notional, bps.")
    slippage_bps: float = Field(1.0, ge=0, description="Fill price slippage against the next open, bps.")
    max_position_frac: float = Field(1.0, gt=0, le=5, description="Largest |position| as a fraction of equity.")
    deadband_frac: float = Field(0.05, ge=0, lt=1, description="Ignore target changes smaller than this.")
    initial_equity_usd: PositiveFloat = Field(10_000.0, description="Starting equity of every episode, USD.")
    max_episode_steps: PositiveInt = Field(1440, description="Bars per training episode (random starts).")
    total_timesteps: PositiveInt = Field(5_000, description="Environment steps to train.")
    checkpoint_every_steps: PositiveInt = Field(1_000, description="Checkpoint model and replay buffer this often.")
    progress_every_steps: PositiveInt = Field(500, description="A progress line this often.")
    learning_rate: float = Field(3e-4, gt=0, lt=1, description="SAC Adam step size.")
    buffer_size: PositiveInt = Field(50_000, description="Replay buffer capacity, transitions.")
    batch_size: PositiveInt = Field(256, description="Transitions per gradient step.")
    tau: float = Field(0.005, gt=0, le=1, description="Target critic Polyak coefficient.")
    gamma: float = Field(0.99, ge=0, lt=1, description="Discount per bar.")
    train_freq: PositiveInt = Field(1, description="Steps between training phases.")
    gradient_steps: PositiveInt = Field(1, description="Gradient steps per training phase.")
    learning_starts: int = Field(500, ge=0, description="Random-action steps before learning.")
    ent_coef: float | Literal["auto"] = Field("auto", description="Entropy coefficient or 'auto'.")
    net_arch: list[PositiveInt] = Field([64, 64], description="Hidden layers of actor and critics.")
    seed: int = Field(0, ge=0, description="Seed of everything random.")
    num_threads: PositiveInt = Field(1, description="torch threads; one is fastest for these small networks.")

    def run_suffix(self) -> str:
        """Return the symbol and training length, e.g. ``BTC-PERP_5000steps``."""
        return f"{Path(self.bars_glob).parent.name}_{self.total_timesteps}steps"


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
        """Print where the bundle is; return agent vs buy-and-hold metrics."""
        print(f"Agent bundle {self.bundle_dir} (train_id={self.train_id}); equity curve {self.equity_plot}")
        return self.table


def load_bars(root: Path, bars_glob: str) -> pl.DataFrame:
    """Read and concatenate the ETL bars matching ``bars_glob``, in time order, empty columns dropped.

    Raises
    ------
    ConfigError
        If nothing matches.
    """
    files = sorted(root.glob(bars_glob))
    if not files:
        raise ConfigError(f"bars_glob={bars_glob!r}: no file under {root}; run the etl stage first")
    bars = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed").sort("ts")
    return drop_empty_columns(bars)


def run_agent(params: AgentParams) -> AgentResult:
    """Train (or resume) the SAC agent, evaluate it on the held-out days, export the bundle.

    Raises
    ------
    ConfigError
        Missing bars, or a held-out period leaving too little training data.
    """
    import torch

    with start_run(params) as ctx:
        torch.set_num_threads(params.num_threads)
        bars = load_bars(ctx.root, params.bars_glob)
        split_ts = bars["ts"].max() - dt.timedelta(days=params.eval_days)
        if bars.filter(pl.col("ts") < split_ts).height < params.window * 10:
            raise ConfigError(f"eval_days={params.eval_days} leaves under {params.window * 10} training bars")
        feats = compute_features(bars)
        names = [c for c in feats.columns if c != "ts"]
        scaler = FeatureScaler.fit(feats.filter(pl.col("ts") < split_ts), names)
        logger.info("Bars {} .. {}; training before {}, evaluation after; {} features: {}",
                    bars["ts"].min(), bars["ts"].max(), split_ts, len(names), ", ".join(names))
        env_kw: dict[str, Any] = dict(
            observation_builder=ObservationBuilder(names, params.window, scaler),
            action_interpreter=ActionInterpreter(params.max_position_frac, params.deadband_frac),
            fill_model=FillModel(params.fee_bps, params.slippage_bps), features=feats,
            initial_equity_usd=params.initial_equity_usd)
        train_env = TradingEnv(bars, **env_kw, end_ts=split_ts, max_episode_steps=params.max_episode_steps,
                               random_start=True)
        sac = SacParams.parse({k: getattr(params, k) for k in SacParams.model_fields})
        ctx.set_total(params.total_timesteps // params.checkpoint_every_steps)

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
        for line in ev.summary_frame().iter_rows(named=True):
            logger.info("eval: {}", line)
        meta = AgentMetadata(
            window=params.window, fee_bps=params.fee_bps, slippage_bps=params.slippage_bps,
            max_position_frac=params.max_position_frac, deadband_frac=params.deadband_frac,
            initial_equity_usd=params.initial_equity_usd, symbol=Path(params.bars_glob).parent.name,
            timeframe="1m", data_span={"train": [str(bars["ts"].min()), str(split_ts)],
                                       "eval": [str(split_ts), str(bars["ts"].max())]},
            sac_params=sac.model_dump(mode="json"),
            params=params.model_dump(mode="json", exclude=set(params.execution_fields)),
            metrics=metrics, feature_names=tuple(names))
        bundle = save_agent_bundle(ctx.run_dir, trained.model, scaler, meta)
        logger.success("Agent bundle written to {} (train_id={})", bundle, ctx.run_id)
        ctx.add_output("bundle", bundle)
        ctx.add_output("equity_plot", plot)
        ctx.set_result(train_id=ctx.run_id, eval_start=str(split_ts), **flat)
    return AgentResult(ctx.run_id, Path(bundle), metrics, plot, ev.summary_frame())
