"""Live trader: feeds, brokers, risk control, emergency protocol, audit trail and the trading loop.

A session trades one symbol with an agent bundle, one decision per closed candle:

- :class:`ReplayProvider` (processed Parquet bars, default) or :class:`CcxtKlineProvider`
  (REST history + websocket klines, gap fills) give closed candles;
- :class:`PaperBroker` (the research fill model) or :class:`CcxtBroker` (Binance USD-M)
  execute; exchange errors become :class:`~quantnb.errors.TemporaryError`,
  :class:`~quantnb.errors.RateLimitError` or :class:`~quantnb.errors.OperationalError`
  at the broker, and :class:`quantnb.retry.RetryPolicy` retries the temporary ones;
- :class:`RiskControl` tracks drawdown from peak equity and validates each order;
- :class:`EmergencyProtocol` cancels, closes reduce-only, confirms flat and records
  ``emergencias_<ts>.csv``; after a drawdown a ``HALTED_DRAWDOWN`` file blocks restarts;
- :class:`Trader` runs the loop and writes ``registro_<ts>.csv``, one row per candle and per
  closing fill; its state (:class:`TraderState`, one :class:`TradingState`: active / reducing /
  halted) is written atomically to ``state_<mode>.json`` after every step, so a restarted
  session continues (replay) or reconciles with the venue (testnet/live);
- :func:`validate_bar` judges each candle by the ETL's bar rules (:mod:`quantnb.data._bar_rules`):
  a rejected one is not acted on; a gap restarts the features.

A stage builds a session with :func:`load_live_config` (the agent bundle of ``train_id``)
and :func:`build_trader`, then calls ``trader.run()``; its signal handler calls
``trader.request_stop(flatten=...)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantnb._lazy import attach

if TYPE_CHECKING:  # the names for type checkers; at run time each loads on first use
    from quantnb.live._audit import EMERGENCIAS_COLUMNS, REGISTRO_COLUMNS, AuditRow, CsvAppender, session_timestamp
    from quantnb.live._broker import Broker
    from quantnb.live._ccxt_broker import CcxtBroker
    from quantnb.live._ccxt_feed import CcxtKlineProvider
    from quantnb.live._emergency import (
        HALT_MARKER,
        EmergencyProtocol,
        EmergencyReport,
        check_not_halted,
        halt_marker_path,
    )
    from quantnb.live._feed import DataProvider, ReplayProvider
    from quantnb.live._guard import BadBarError, validate_bar
    from quantnb.live._paper import PaperBroker
    from quantnb.live._resume import RECONCILIATION_COLUMNS
    from quantnb.live._retry import RetryPolicy, retry_temporary
    from quantnb.live._risk import OrderPlan, RiskControl, RiskLimits
    from quantnb.live._session import LiveConfig, build_trader, load_live_config, run_with_restarts
    from quantnb.live._state import (
        PendingOrder,
        SessionLock,
        StateStore,
        TraderState,
        TradingState,
        journal_path,
        read_latest_state,
        state_path,
    )
    from quantnb.live._stats import SessionStats, StepInfo
    from quantnb.live._trader import AgentLike, Trader
    from quantnb.live._types import AccountState, Bar, MarketRules
    from quantnb.live._venue import ENV_KEYS, credentials_from_env, make_exchange, scrub, translate_ccxt_error

__getattr__, __dir__ = attach(__name__, {
    "EMERGENCIAS_COLUMNS": "quantnb.live._audit",
    "REGISTRO_COLUMNS": "quantnb.live._audit",
    "AuditRow": "quantnb.live._audit",
    "CsvAppender": "quantnb.live._audit",
    "Broker": "quantnb.live._broker",
    "CcxtBroker": "quantnb.live._ccxt_broker",
    "CcxtKlineProvider": "quantnb.live._ccxt_feed",
    "HALT_MARKER": "quantnb.live._emergency",
    "EmergencyProtocol": "quantnb.live._emergency",
    "EmergencyReport": "quantnb.live._emergency",
    "check_not_halted": "quantnb.live._emergency",
    "halt_marker_path": "quantnb.live._emergency",
    "DataProvider": "quantnb.live._feed",
    "ReplayProvider": "quantnb.live._feed",
    "BadBarError": "quantnb.live._guard",
    "validate_bar": "quantnb.live._guard",
    "PaperBroker": "quantnb.live._paper",
    "RECONCILIATION_COLUMNS": "quantnb.live._resume",
    "RetryPolicy": "quantnb.live._retry",
    "retry_temporary": "quantnb.live._retry",
    "OrderPlan": "quantnb.live._risk",
    "RiskControl": "quantnb.live._risk",
    "RiskLimits": "quantnb.live._risk",
    "LiveConfig": "quantnb.live._session",
    "build_trader": "quantnb.live._session",
    "load_live_config": "quantnb.live._session",
    "run_with_restarts": "quantnb.live._session",
    "PendingOrder": "quantnb.live._state",
    "SessionLock": "quantnb.live._state",
    "StateStore": "quantnb.live._state",
    "TraderState": "quantnb.live._state",
    "TradingState": "quantnb.live._state",
    "journal_path": "quantnb.live._state",
    "read_latest_state": "quantnb.live._state",
    "state_path": "quantnb.live._state",
    "SessionStats": "quantnb.live._stats",
    "StepInfo": "quantnb.live._stats",
    "AgentLike": "quantnb.live._trader",
    "Trader": "quantnb.live._trader",
    "session_timestamp": "quantnb.live._audit",
    "AccountState": "quantnb.live._types",
    "Bar": "quantnb.live._types",
    "MarketRules": "quantnb.live._types",
    "ENV_KEYS": "quantnb.live._venue",
    "credentials_from_env": "quantnb.live._venue",
    "make_exchange": "quantnb.live._venue",
    "scrub": "quantnb.live._venue",
    "translate_ccxt_error": "quantnb.live._venue",
})

__all__ = [
    "LiveConfig",
    "load_live_config",
    "build_trader",
    "run_with_restarts",
    "Trader",
    "AgentLike",
    "SessionStats",
    "StepInfo",
    "session_timestamp",
    "DataProvider",
    "ReplayProvider",
    "CcxtKlineProvider",
    "Broker",
    "PaperBroker",
    "CcxtBroker",
    "RiskLimits",
    "RiskControl",
    "OrderPlan",
    "RetryPolicy",
    "retry_temporary",
    "TradingState",
    "TraderState",
    "PendingOrder",
    "StateStore",
    "state_path",
    "SessionLock",
    "journal_path",
    "read_latest_state",
    "BadBarError",
    "validate_bar",
    "RECONCILIATION_COLUMNS",
    "EmergencyProtocol",
    "EmergencyReport",
    "HALT_MARKER",
    "check_not_halted",
    "halt_marker_path",
    "REGISTRO_COLUMNS",
    "EMERGENCIAS_COLUMNS",
    "AuditRow",
    "CsvAppender",
    "Bar",
    "AccountState",
    "MarketRules",
    "ENV_KEYS",
    "credentials_from_env",
    "make_exchange",
    "translate_ccxt_error",
    "scrub",
]
