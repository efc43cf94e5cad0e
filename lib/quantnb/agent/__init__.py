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
    spec = EnvSpec(window=window, fee_bps=fee_bps, ...)     # window, action mapping, costs
    train_env = make_env(bars, spec, scaler, feats, end_ts=split_ts, max_episode_steps=1440, random_start=True)
    result = train_sac(train_env, SacParams(...), total_timesteps=..., checkpoint_dir=run_dir / "checkpoints",
                       checkpoint_every_steps=..., resume=resume, on_checkpoint=..., on_progress=...)
    eval_env = make_env(bars, spec, scaler, feats, start_ts=split_ts)
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
    from quantnb.agent._bundle import AgentBundle, AgentMetadata, load_agent_bundle, save_agent_bundle
    from quantnb.agent._classifier import CLASSIFIER_FEATURES, AgentFeatureStream, ClassifierSignal
    from quantnb.agent._costs import DEFAULT_FEE_BPS, VENUE_FEES, BarQuote, Fill, FillModel, walk_book
    from quantnb.agent._env import TradingEnv, make_env
    from quantnb.agent._evaluate import (
        MINUTES_PER_YEAR,
        EvaluationResult,
        evaluate_agent,
        performance_metrics,
        stitch_evaluations,
    )
    from quantnb.agent._features import (
        BOOK_FEATURE_SOURCES,
        DEFAULT_WARMUP_BARS,
        MARKET_FEATURES,
        compute_features,
    )
    from quantnb.agent._incremental import IncrementalFeatures
    from quantnb.agent._observation import (
        ActionInterpreter,
        Decision,
        ObservationBuilder,
        PortfolioState,
    )
    from quantnb.agent._perp import MARGIN_TIERS, FundingRates, MarginTier, settlements_between
    from quantnb.agent._plot import plot_equity_curve
    from quantnb.agent._portfolio import Portfolio
    from quantnb.agent._rules import MarketRules
    from quantnb.agent._tearsheet import plot_tear_sheet, tear_sheet_data
    from quantnb.agent._train import train_sac
    from quantnb.agent._train_types import EnvSpec, SacParams, nest_flat_params
    from quantnb.features import FeatureScaler

__getattr__, __dir__ = attach(__name__)

__all__ = [
    # features
    "compute_features",
    "IncrementalFeatures",
    "MARKET_FEATURES",
    "BOOK_FEATURE_SOURCES",
    "DEFAULT_WARMUP_BARS",
    "FeatureScaler",
    # the classifier's probabilities as agent features
    "ClassifierSignal",
    "CLASSIFIER_FEATURES",
    # observation, action, fills (shared with quantnb.live)
    "ObservationBuilder",
    "PortfolioState",
    "ActionInterpreter",
    "Decision",
    "Fill",
    "FillModel",
    "Portfolio",
    # execution costs, perpetual economics, venue rules
    "BarQuote",
    "VENUE_FEES",
    "walk_book",
    "FundingRates",
    "MarginTier",
    "MARGIN_TIERS",
    "MarketRules",
    # environment and training
    "TradingEnv",
    "make_env",
    "SacParams",
    "EnvSpec",
    "nest_flat_params",
    "train_sac",
    # evaluation
    "evaluate_agent",
    "EvaluationResult",
    "performance_metrics",
    "plot_equity_curve",
    "MINUTES_PER_YEAR",
    # bundle
    "save_agent_bundle",
    "load_agent_bundle",
    "AgentBundle",
    "AgentMetadata",
    "AgentFeatureStream",
    "DEFAULT_FEE_BPS",
    "plot_tear_sheet",
    "settlements_between",
    "stitch_evaluations",
    "tear_sheet_data",
]
