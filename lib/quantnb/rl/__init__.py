"""Reinforcement-learning core: features, observations, fills, the trading environment and SAC.

One set of building blocks serves research and production, so they cannot drift:

- features: :func:`compute_features` (batch, research) and :class:`IncrementalFeatures`
  (one closed bar at a time, live) give the same numbers;
- :class:`FeatureScaler` fitted on the training period only;
- :class:`ObservationBuilder` (scaled feature window + :class:`PortfolioState`) and
  :class:`ActionInterpreter` (action in ``[-1, 1]`` -> target position fraction of equity);
- :class:`FillModel` (next bar's open, ``fee_bps``, ``slippage_bps``) and :class:`Portfolio`
  (cash, position, equity, fees, trades), used by the environment and the paper broker.

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
"""

from __future__ import annotations

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
from quantnb.rl._portfolio import Fill, FillModel, Portfolio
from quantnb.rl._scaler import FeatureScaler

__all__ = [
    "compute_features",
    "available_feature_names",
    "IncrementalFeatures",
    "MARKET_FEATURES",
    "BOOK_FEATURE_SOURCES",
    "DEFAULT_WARMUP_BARS",
    "FeatureScaler",
    "ObservationBuilder",
    "PortfolioState",
    "PORTFOLIO_STATE_NAMES",
    "ActionInterpreter",
    "Decision",
    "Fill",
    "FillModel",
    "Portfolio",
]
