"""Reinforcement-learning core: features, observations, fills, the trading environment and SAC.

One set of building blocks serves research and production, so they cannot drift:

- features: :func:`compute_features` (batch, research) and :class:`IncrementalFeatures`
  (one closed bar at a time, live) give the same numbers;
- :class:`FeatureScaler` fitted on the training period only;
- :class:`ObservationBuilder` (scaled feature window + :class:`PortfolioState`) and
  :class:`ActionInterpreter` (action in ``[-1, 1]`` -> target position fraction of equity);
- :class:`FillModel` (next bar's open, ``fee_bps``, ``slippage_bps``; optionally spread, square-root
  impact or a recorded book walk) and :class:`Portfolio` (cash, position, equity, fees, impact,
  funding, liquidation), with :class:`FundingRates`, :data:`MARGIN_TIERS` and :class:`MarketRules`:
  one execution-cost model used alike by the environment and the paper broker.

Research use (what the agent stage calls)::

    feats = compute_features(bars)                         # whole history, one call
    names = [c for c in feats.columns if c != "ts"]
    scaler = FeatureScaler.fit(feats.filter(pl.col("ts") < split_ts), names)   # training period only
    builder = ObservationBuilder(names, window, scaler)
    env_kw = dict(observation_builder=builder, action_interpreter=ActionInterpreter(max_position_frac, deadband_frac),
                  fill_model=FillModel(fee_bps, slippage_bps), features=feats)
    train_env = TradingEnv(bars, **env_kw, end_ts=split_ts, max_episode_steps=1440, random_start=True)
    result = train_sac(train_env, SacParams(...), total_timesteps=..., checkpoint_dir=run_dir / "checkpoints",
                       checkpoint_every_steps=..., resume=resume, on_checkpoint=..., on_progress=...)
    eval_env = TradingEnv(bars, **env_kw, start_ts=split_ts)
    ev = evaluate_agent(result.model, eval_env, plot_path=debug_dir / "equity_curve.png")
    save_agent_bundle(run_dir, result.model, scaler, AgentMetadata(window=window, ..., metrics=ev.metrics_dict()))

Live use, per closed bar (everything comes from the agent bundle)::

    bundle = load_agent_bundle(run_dir)
    feats = bundle.new_feature_stream()        # IncrementalFeatures(window=bundle window)
    feats.update_frame(history_bars)           # >= warmup_bars + window bars of history
    ...
    feats.update(bar)                          # bar: {"ts", "close", ...}
    win = feats.window_array()                 # (window, n_features) or None while warming up
    obs = bundle.observation_builder.build(win, portfolio.state(close))
    action, _ = bundle.model.predict(obs, deterministic=True)
    decision = bundle.action_interpreter.decide(action, portfolio.state(close).position_frac)
    qty = portfolio.order_qty_for_target(decision.target_frac, close)   # sized at the close
    fill = bundle.fill_model.fill(qty, next_open)                        # paper: next bar's open

For research-live parity in replay, start the paper portfolio with
``bundle.metadata.initial_equity_usd`` (the observation holds equity over initial equity) and
feed the same bars from the same first bar as the evaluation's feature computation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantnb._lazy import attach

if TYPE_CHECKING:  # the names for type checkers; at run time each loads on first use
    from quantnb.features import FeatureScaler
    from quantnb.rl._bundle import AgentBundle, AgentMetadata, load_agent_bundle, save_agent_bundle
    from quantnb.rl._checkpoint import latest_checkpoint
    from quantnb.rl._classifier import CLASSIFIER_FEATURES, AgentFeatureStream, ClassifierSignal, ClassifierStream
    from quantnb.rl._costs import VENUE_FEES, BarQuote, FeeSchedule, Fill, FillModel, fit_impact_coef, walk_book
    from quantnb.rl._env import TradingEnv
    from quantnb.rl._evaluate import (
        MINUTES_PER_YEAR,
        EvaluationResult,
        PerformanceMetrics,
        evaluate_agent,
        performance_metrics,
    )
    from quantnb.rl._features import (
        BOOK_FEATURE_SOURCES,
        DEFAULT_WARMUP_BARS,
        MARKET_FEATURES,
        available_feature_names,
        compute_features,
    )
    from quantnb.rl._incremental import IncrementalFeatures
    from quantnb.rl._observation import (
        PORTFOLIO_STATE_NAMES,
        ActionInterpreter,
        Decision,
        ObservationBuilder,
        PortfolioState,
    )
    from quantnb.rl._perp import MARGIN_TIERS, FundingRates, MarginTier
    from quantnb.rl._plot import plot_equity_curve
    from quantnb.rl._portfolio import Portfolio
    from quantnb.rl._rules import MarketRules
    from quantnb.rl._train import train_sac
    from quantnb.rl._train_types import CheckpointInfo, EnvSpec, SacParams, TrainProgress, nest_flat_params

__getattr__, __dir__ = attach(__name__, {
    "FeatureScaler": "quantnb.features",
    "AgentBundle": "quantnb.rl._bundle",
    "AgentMetadata": "quantnb.rl._bundle",
    "load_agent_bundle": "quantnb.rl._bundle",
    "save_agent_bundle": "quantnb.rl._bundle",
    "latest_checkpoint": "quantnb.rl._checkpoint",
    "CLASSIFIER_FEATURES": "quantnb.rl._classifier",
    "AgentFeatureStream": "quantnb.rl._classifier",
    "ClassifierSignal": "quantnb.rl._classifier",
    "ClassifierStream": "quantnb.rl._classifier",
    "TradingEnv": "quantnb.rl._env",
    "MINUTES_PER_YEAR": "quantnb.rl._evaluate",
    "EvaluationResult": "quantnb.rl._evaluate",
    "PerformanceMetrics": "quantnb.rl._evaluate",
    "evaluate_agent": "quantnb.rl._evaluate",
    "performance_metrics": "quantnb.rl._evaluate",
    "BOOK_FEATURE_SOURCES": "quantnb.rl._features",
    "DEFAULT_WARMUP_BARS": "quantnb.rl._features",
    "MARKET_FEATURES": "quantnb.rl._features",
    "available_feature_names": "quantnb.rl._features",
    "compute_features": "quantnb.rl._features",
    "IncrementalFeatures": "quantnb.rl._incremental",
    "PORTFOLIO_STATE_NAMES": "quantnb.rl._observation",
    "ActionInterpreter": "quantnb.rl._observation",
    "Decision": "quantnb.rl._observation",
    "ObservationBuilder": "quantnb.rl._observation",
    "PortfolioState": "quantnb.rl._observation",
    "plot_equity_curve": "quantnb.rl._plot",
    "BarQuote": "quantnb.rl._costs",
    "FeeSchedule": "quantnb.rl._costs",
    "Fill": "quantnb.rl._costs",
    "FillModel": "quantnb.rl._costs",
    "VENUE_FEES": "quantnb.rl._costs",
    "walk_book": "quantnb.rl._costs",
    "fit_impact_coef": "quantnb.rl._costs",
    "FundingRates": "quantnb.rl._perp",
    "MARGIN_TIERS": "quantnb.rl._perp",
    "MarginTier": "quantnb.rl._perp",
    "MarketRules": "quantnb.rl._rules",
    "Portfolio": "quantnb.rl._portfolio",
    "train_sac": "quantnb.rl._train",
    "CheckpointInfo": "quantnb.rl._train_types",
    "EnvSpec": "quantnb.rl._train_types",
    "SacParams": "quantnb.rl._train_types",
    "TrainProgress": "quantnb.rl._train_types",
    "nest_flat_params": "quantnb.rl._train_types",
})

__all__ = [
    # features
    "compute_features",
    "available_feature_names",
    "IncrementalFeatures",
    "MARKET_FEATURES",
    "BOOK_FEATURE_SOURCES",
    "DEFAULT_WARMUP_BARS",
    "FeatureScaler",
    # the classifier's probabilities as agent features
    "ClassifierSignal",
    "ClassifierStream",
    "AgentFeatureStream",
    "CLASSIFIER_FEATURES",
    # observation, action, fills (shared with quantnb.live)
    "ObservationBuilder",
    "PortfolioState",
    "PORTFOLIO_STATE_NAMES",
    "ActionInterpreter",
    "Decision",
    "Fill",
    "FillModel",
    "Portfolio",
    # execution costs, perpetual economics, venue rules
    "BarQuote",
    "FeeSchedule",
    "VENUE_FEES",
    "walk_book",
    "fit_impact_coef",
    "FundingRates",
    "MarginTier",
    "MARGIN_TIERS",
    "MarketRules",
    # environment and training
    "TradingEnv",
    "SacParams",
    "EnvSpec",
    "nest_flat_params",
    "train_sac",
    "TrainProgress",
    "CheckpointInfo",
    "latest_checkpoint",
    # evaluation
    "evaluate_agent",
    "EvaluationResult",
    "PerformanceMetrics",
    "performance_metrics",
    "plot_equity_curve",
    "MINUTES_PER_YEAR",
    # bundle
    "save_agent_bundle",
    "load_agent_bundle",
    "AgentBundle",
    "AgentMetadata",
]
