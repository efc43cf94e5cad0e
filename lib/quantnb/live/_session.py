"""Build a trading session from an agent bundle: replay (default), testnet or live."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import polars as pl
from loguru import logger

from quantnb.agent import AgentBundle, load_agent_bundle
from quantnb.data import read_bars
from quantnb.errors import ConfigError, TemporaryError
from quantnb.live._book_feed import book_source_columns, check_replay_features, with_book_features
from quantnb.live._broker import Broker
from quantnb.live._ccxt_broker import CcxtBroker
from quantnb.live._ccxt_feed import CcxtKlineProvider
from quantnb.live._emergency import check_not_halted
from quantnb.live._feed import DataProvider, ReplayProvider
from quantnb.live._paper import PaperBroker
from quantnb.live._settings import SessionSettings
from quantnb.live._stats import SessionStats, StepInfo
from quantnb.live._trader import Trader
from quantnb.live._venue import WS_URLS
from quantnb.retry import RetryPolicy
from quantnb.runs import production_dir

__all__ = ["LiveConfig", "load_live_config", "build_trader", "run_with_restarts"]

_TRAIN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_TIMEFRAME_S = {"1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "2h": 7200, "4h": 14400,
                "6h": 21600, "8h": 28800, "12h": 43200, "1d": 86400}


@dataclasses.dataclass(frozen=True)
class LiveConfig:
    """A loaded agent bundle and where its production files go."""

    train_id: str
    bundle_dir: Path
    out_dir: Path
    bundle: AgentBundle
    timeframe: str


def load_live_config(runs_dir: Path, train_id: str, *, timeframe: str | None = None) -> LiveConfig:
    """Load ``runs_dir/<train_id>`` as an agent bundle and check it can trade ``timeframe``.

    Parameters
    ----------
    runs_dir : pathlib.Path
        The project's ``runs/`` folder.
    train_id : str
        Run id of the agent stage that exported the bundle.
    timeframe : str, optional
        Bar interval to trade; must equal the bundle's (features are per bar). Default: the bundle's.

    Returns
    -------
    LiveConfig

    Raises
    ------
    ConfigError
        If ``train_id`` is malformed, a bundle file is missing or the files disagree
        (from :func:`quantnb.agent.load_agent_bundle`), or the timeframe differs from training.
    """
    if not train_id or not _TRAIN_ID.match(train_id):
        raise ConfigError(f"train_id={train_id!r}: give the agent run's id, e.g. 'agent_default_20240101_120000'")
    bundle_dir = Path(runs_dir) / train_id
    bundle = load_agent_bundle(bundle_dir)
    trained_tf = bundle.metadata.timeframe or "1m"
    tf = timeframe or trained_tf
    if tf != trained_tf:
        raise ConfigError(f"timeframe={tf!r} but {bundle_dir}/config_metadata.yaml says the agent was trained on "
                          f"{trained_tf!r} bars; trade {trained_tf!r} or train an agent on {tf!r} bars")
    if tf not in _TIMEFRAME_S:
        raise ConfigError(f"timeframe={tf!r}: use one of {sorted(_TIMEFRAME_S, key=_TIMEFRAME_S.__getitem__)}")
    return LiveConfig(train_id, bundle_dir, production_dir(bundle_dir), bundle, tf)


def _ccxt_symbol(symbol: str) -> str:
    if "/" in symbol:
        return symbol
    s = symbol.upper().replace("-", "")
    if s.endswith("PERP"):
        s = s[: -len("PERP")] + "USDT"
    if not s.endswith("USDT"):
        raise ConfigError(f"symbol={symbol!r}: give a Binance USD-M perpetual, e.g. 'BTCUSDT' or 'BTC/USDT:USDT'")
    return f"{s[:-4]}/USDT:USDT"


def _replay_provider(cfg: LiveConfig, bars: pl.DataFrame | str | Path | Sequence[str | Path],
                     start_ts: dt.datetime | None, speed: float) -> tuple[ReplayProvider, int]:
    df = read_bars(bars)
    where = "the replay bars" + ("" if isinstance(bars, pl.DataFrame) else f" {str(bars)[:200]}")
    check_replay_features(cfg.bundle.feature_names, df, computed=cfg.bundle.computed_features, where=where)
    m = cfg.bundle.metadata
    need = m.warmup_bars + m.window - 2
    first = df["ts"].search_sorted(start_ts, side="left") if start_ts is not None else need
    if first < need:
        raise ConfigError(f"replay starts at bar {first} ({df['ts'][min(first, df.height - 1)]}) but the agent needs "
                          f"{need} bars of history before it (warmup_bars={m.warmup_bars}, window={m.window}); "
                          f"start later or give earlier bars")
    if first >= df.height:
        raise ConfigError(f"replay start {start_ts} is after the last bar {df['ts'][-1]}; pick an earlier start_ts")
    provider = ReplayProvider(df, history_bars=int(first), speed=speed, bar_interval_s=_TIMEFRAME_S[cfg.timeframe])
    return provider, df.height - int(first)


def build_trader(
    cfg: LiveConfig,
    settings: SessionSettings | None = None,
    *,
    replay_bars: pl.DataFrame | str | Path | Sequence[str | Path] | None = None,
    replay_start_ts: dt.datetime | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    on_warmup: Callable[[int, int], None] | None = None,
    retry: RetryPolicy | None = None,
    session_ts: str | None = None,
    run_id: str = "",
) -> Trader:
    """Assemble a :class:`Trader` for ``settings.mode``; nothing connects until ``trader.run()``.

    Parameters
    ----------
    cfg : LiveConfig
        From :func:`load_live_config`.
    settings : SessionSettings, optional
        What the person chose (mode, symbol, risk limits, stop conditions, endpoints...), checked
        when it was built; default ``SessionSettings()`` (a replay with the default limits).
    replay_bars : DataFrame, path, glob or list, optional
        Processed bars for replay (required in replay mode).
    replay_start_ts : datetime, optional
        First traded bar; every earlier bar warms the features up. Default: as soon as the
        features are ready.
    on_step : callable, optional
        Called with each :class:`StepInfo` (update the heartbeat there).
    on_warmup : callable, optional
        Called with ``(done, total)`` history candles during the features' warm-up.
    retry : RetryPolicy, optional
        Retries of exchange calls (default :class:`quantnb.retry.RetryPolicy`: 4 attempts,
        exponential backoff with jitter, ``Retry-After`` honoured).
    session_ts : str, optional
        Suffix of ``registro_<ts>.csv`` / ``emergencias_<ts>.csv`` of a new session (e.g.
        the production log's); default the current UTC time, made unique in ``cfg.out_dir``.
        A resumed session keeps its recorded suffix.
    run_id : str
        The run's id, recorded in the session lock (a second session is refused naming it).

    Returns
    -------
    Trader
        Call ``run()``; call ``request_stop(flatten)`` from a signal handler.

    Raises
    ------
    ConfigError
        Before any connection: features the feed cannot give (replay bars without the book
        columns, a live book that does not sync), the drawdown halt marker present, missing API
        key variables, missing replay bars or too little history.
    """
    s = settings if settings is not None else SessionSettings()
    mode, symbol, limits = s.mode, s.symbol, s.limits
    check_not_halted(cfg.out_dir)
    bundle, meta = cfg.bundle, cfg.bundle.metadata
    retry = retry or RetryPolicy(what="live/retry")
    broker: Broker
    provider: DataProvider
    watch: dict[str, Any] = {}  # the stale-feed watchdog: off in replay (the bars are checked at start)
    if mode == "replay":
        if replay_bars is None:
            raise ConfigError("mode='replay' needs replay_bars: the processed Parquet bars (path, glob or DataFrame)")
        provider, n = _replay_provider(cfg, replay_bars, replay_start_ts, s.replay_speed)
        fill_model = bundle.fill_model
        if s.fee_bps is not None:
            fill_model = fill_model.replace(fee_bps=s.fee_bps)  # keeps spread, impact and maker settings
        costs = meta.env.cost_setup(symbol or meta.symbol)  # the training environment's rules, funding, margin
        broker = PaperBroker(symbol or meta.symbol or "replay", s.initial_equity_usd or meta.initial_equity_usd,
                             fill_model, rules=costs["market_rules"], funding=costs["funding"],
                             margin_tiers=costs["margin_tiers"], latency_bars=costs["latency_bars"])
        logger.info("live/session: replay of {} bars of {} with agent {}", n, meta.symbol, cfg.train_id)
    else:
        sym = _ccxt_symbol(symbol or meta.symbol)
        broker = ccxt_broker = CcxtBroker(sym, mode, base_url=s.rest_base_url, timeout_s=s.timeout_s)
        provider = CcxtKlineProvider(ccxt_broker.exchange, sym, cfg.timeframe, ws_url=s.ws_url or WS_URLS[mode],
                                     history_bars=meta.warmup_bars + meta.window - 1, retry=retry)
        provider = with_book_features(provider, meta.feature_names, sym, mode=mode, computed=bundle.computed_features)
        watch = {"stale_bar_s": float(_TIMEFRAME_S[cfg.timeframe]),
                 "needed_columns": book_source_columns([f for f in meta.feature_names
                                                        if f not in bundle.computed_features])}
        logger.warning("live/session: {} trading of {} with agent {} (max_drawdown_frac={})", mode.upper(), sym,
                       cfg.train_id, limits.max_drawdown_frac)
    return Trader(bundle, provider, broker, limits, cfg.out_dir, retry=retry, on_step=on_step, max_steps=s.max_steps,
                  duration_s=s.duration_s, session_ts=session_ts, mode=mode, fresh_start=s.fresh_start,
                  bar_interval_ms=_TIMEFRAME_S[cfg.timeframe] * 1000, max_bad_bars=s.max_bad_bars, run_id=run_id,
                  max_order_rejections=s.max_order_rejections, stale_warn_bars=s.stale_warn_bars,
                  stale_emergency_bars=s.stale_emergency_bars, stop_timeout_s=s.stop_timeout_s,
                  on_warmup=on_warmup, **watch)


class _Restart(TemporaryError):
    """A session ended in an emergency that may be restarted."""


def run_with_restarts(make_trader: Callable[[], Trader], *, max_restarts: int = 3, backoff_s: float = 30.0,
                      restart_on: tuple[str, ...] = ("connection",)) -> list[SessionStats]:
    """Run sessions, restarting after an emergency whose cause is in ``restart_on``, with backoff.

    A drawdown emergency is never restarted (its marker file refuses it anyway); a session
    that ends without emergency ends the loop. Each restart continues the recorded state
    (same account and peak equity). The restarts are retries under a
    :class:`quantnb.retry.RetryPolicy` (exponential from ``backoff_s``, with jitter of a tenth
    of it; stamina's test mode skips the waits).

    Parameters
    ----------
    make_trader : callable
        Builds a fresh :class:`Trader` (e.g. ``lambda: build_trader(cfg, ...)``).
    max_restarts : int
        Restarts allowed in all.
    backoff_s : float
        First wait, seconds; doubled after each restart.
    restart_on : tuple of str
        Emergency causes that may restart (``connection``, ``critical_error``).

    Returns
    -------
    list of SessionStats
        One per session, in order.
    """
    sessions: list[SessionStats] = []

    def session() -> None:
        stats = make_trader().run()
        sessions.append(stats)
        cause = stats.emergency.cause if stats.emergency else None
        if cause is not None and cause != "drawdown" and cause in restart_on:
            raise _Restart(f"session {len(sessions)} ended in an emergency ({cause})")

    policy = RetryPolicy(attempts=max_restarts + 1, timeout_s=None, wait_initial_s=backoff_s,
                         wait_max_s=backoff_s * 2**max_restarts, wait_jitter_s=backoff_s / 10, what="live/session")
    with contextlib.suppress(_Restart):  # restarts spent: the policy logged it; the sessions say how each ended
        policy.call(session)
    return sessions
