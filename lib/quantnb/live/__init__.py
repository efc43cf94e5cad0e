"""Live trader: feeds, brokers, risk control, emergency protocol, audit trail and the trading loop.

A session trades one symbol with an agent bundle, one decision per closed candle:

- :class:`ReplayProvider` (processed Parquet bars, default) or :class:`~quantnb.live._ccxt_feed.CcxtKlineProvider`
  (REST history + websocket klines, gap fills) give closed candles;
- :class:`PaperBroker` (the research fill model) or :class:`~quantnb.live._ccxt_broker.CcxtBroker` (Binance USD-M)
  execute; exchange errors become :class:`~quantnb.errors.TemporaryError`,
  :class:`~quantnb.errors.RateLimitError` or :class:`~quantnb.errors.OperationalError`
  at the broker, and :class:`quantnb.retry.RetryPolicy` retries the temporary ones;
- :class:`~quantnb.live._risk.RiskControl` tracks drawdown from peak equity and validates each order;
- :class:`~quantnb.live._emergency.EmergencyProtocol` cancels, closes reduce-only, confirms flat and records
  ``emergencias_<ts>.csv``; after a drawdown a ``HALTED_DRAWDOWN`` file blocks restarts;
- :class:`Trader` runs the loop and writes ``registro_<ts>.csv``, one row per candle and per
  closing fill; its state (:class:`~quantnb.live._state.TraderState`, one
  :class:`~quantnb.live._state.TradingState`: active / reducing / halted) is written atomically
  to ``state_<mode>.json`` after every step, so a restarted session continues (replay) or
  reconciles with the venue (testnet/live);
- :func:`~quantnb.live._guard.validate_bar` judges each candle by the ETL's bar rules
  (:mod:`quantnb.data._bar_rules`):
  a rejected one is not acted on; a gap restarts the features.

A stage builds a session with :func:`load_live_config` (the agent bundle of ``train_id``)
and :func:`build_trader`, then calls ``trader.run()``; its signal handler calls
``trader.request_stop(flatten=...)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantnb._lazy import attach

if TYPE_CHECKING:  # the names for type checkers; at run time each loads on first use
    from quantnb.live._audit import session_timestamp
    from quantnb.live._feed import ReplayProvider
    from quantnb.live._guard import BadBarError
    from quantnb.live._paper import PaperBroker
    from quantnb.live._risk import RiskLimits
    from quantnb.live._session import build_trader, load_live_config, run_with_restarts
    from quantnb.live._settings import SessionSettings
    from quantnb.live._state import read_latest_state
    from quantnb.live._stats import SessionStats, StepInfo
    from quantnb.live._trader import Trader
    from quantnb.live._types import MarketRules
    from quantnb.live._venue import make_exchange, translate_ccxt_error

__getattr__, __dir__ = attach(__name__)

__all__ = [
    "SessionSettings",
    "load_live_config",
    "build_trader",
    "run_with_restarts",
    "Trader",
    "SessionStats",
    "StepInfo",
    "session_timestamp",
    "ReplayProvider",
    "PaperBroker",
    "RiskLimits",
    "read_latest_state",
    "BadBarError",
    "MarketRules",
    "make_exchange",
    "translate_ccxt_error",
]
