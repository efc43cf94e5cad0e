"""Live stage: the trader, a long papermill-launched run over an agent bundle.

``mode="replay"`` (default) replays processed bars through a paper broker with the research
fill model; ``testnet`` and ``live`` trade Binance USD-M through ccxt with keys from the
environment only (``live`` also needs ``confirm_live=True``, checked before any connection).
Every closed bar writes a ``registro_<ts>.csv`` row and updates the heartbeat; a drawdown
breach, a critical error or repeated connection failures run the emergency protocol. One
production log ``runs/<train_id>/produccion/produccion_<ts>.log`` captures everything.
SIGTERM/SIGINT stop the loop in order (flattening first if ``flatten_on_stop``).

The trader's state is written atomically after every bar to
``runs/<train_id>/produccion/state_<mode>.json``; a session started again for the same
``train_id`` and mode continues it (``fresh_start=True`` starts anew, logged). A session
that ends in the emergency protocol is recorded ``failed`` (exit code 1 from ``quantnb run``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl
from loguru import logger
from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from quantnb.config import StageParams
from quantnb.display import HtmlResult
from quantnb.errors import ConfigError
from quantnb.live import RiskLimits, SessionSettings
from quantnb.runs import record_test_spans, runs_dir, start_run
from quantnb.stages._links import latest_run_ids

if TYPE_CHECKING:
    from quantnb.live import SessionStats

__all__ = ["LiveParams", "LiveResult", "run_live"]


_RUN_TIMESTAMP = re.compile(r"_\d{8}_\d{6}$")  # the UTC stamp that ends every run id
_S, _L = SessionSettings, RiskLimits  # the session's and the limits' defaults, written once there

class LiveParams(StageParams):
    """Parameters of the live stage. API keys are never parameters: they come from the environment.

    The notebook's flat fields of :class:`quantnb.live.SessionSettings` and
    :class:`quantnb.live.RiskLimits`: their defaults are read from there, and
    :meth:`session_settings` builds (and so checks, once) the settings the trader takes.
    """

    stage = "live"
    train_id: str = Field("", description="Run id of the agent stage whose bundle trades (quantnb runs --stage "
                                          "agent lists them).")
    mode: Literal["replay", "testnet", "live"] = Field(_S.mode, description="replay (paper), testnet or live.")
    symbol: str | None = Field(_S.symbol, description="Exchange symbol for testnet/live, e.g. BTCUSDT.")
    timeframe: str = Field("1m", description="Bar interval; must match the bundle's.")
    replay_glob: str = Field("data/processed/unknown/perp/BTC-PERP/*.parquet", description="Processed bars to replay.")
    replay_start: str | None = Field(
        None, description="First traded bar (ISO 8601, UTC); default the bars after the agent's walk-forward "
                          "(walk_forward_holdout_days), else its evaluation start.")
    replay_speed: float = Field(
        _S.replay_speed, ge=0, description="Replay speed factor (60: a 1-minute bar per second); 0: max.")
    max_drawdown_frac: float = Field(_L.max_drawdown_frac, description="Drawdown from peak equity that triggers "
                                                                       "the emergency protocol, in (0, 1).")
    max_position_frac: float = Field(_L.max_position_frac, description="Largest |position| as a fraction of equity.")
    fee_bps: float | None = Field(_S.fee_bps, ge=0, description="Paper taker fee override, bps; default the "
                                                                "bundle's.")
    initial_equity_usd: PositiveFloat | None = Field(_S.initial_equity_usd,
                                                     description="Paper equity; default the bundle's.")
    max_steps: PositiveInt | None = Field(_S.max_steps, description="Stop after this many bars.")
    duration_s: PositiveFloat | None = Field(_S.duration_s, description="Stop after this many seconds.")
    confirm_live: bool = Field(_S.confirm_live, description="Must be True for mode='live' (real money).")
    flatten_on_stop: bool = Field(True, description="On SIGTERM/SIGINT, close positions before stopping.")
    fresh_start: bool = Field(
        _S.fresh_start, description="Set aside the recorded trader state of this train_id and mode (new account, "
        "new peak equity); logged at WARNING. By default a session continues the recorded one.")
    max_bad_bars: PositiveInt = Field(
        _S.max_bad_bars, description="Consecutive rejected bars (NaN/Inf, non-positive, inconsistent OHLC) that "
        "trigger the emergency protocol.")
    max_order_rejections: PositiveInt = Field(
        _S.max_order_rejections, description="Consecutive orders refused by the venue (e.g. -2019 Margin is "
        "insufficient) that trigger the emergency protocol; one refusal is a registro row (order_rejected) and the "
        "bar is skipped.")
    stale_warn_bars: PositiveInt = Field(
        _S.stale_warn_bars, description="testnet/live: bars with no complete candle (stream open but silent, or a "
        "needed order-book column missing) before a WARNING and a REST fallback for the missed candles.")
    stale_emergency_bars: PositiveInt = Field(
        _S.stale_emergency_bars, description="testnet/live: missed bars (REST gave none either) that trigger the "
        "emergency protocol (cause stale_feed).")
    stop_timeout_s: PositiveFloat = Field(
        _S.stop_timeout_s, lt=30.0, description="After SIGTERM/SIGINT the state is saved as 'reducing' at once; a "
        "flatten not confirmed within this many seconds is recorded in emergencias (before the runner's 30 s kill).")
    num_threads: PositiveInt = Field(1, description="torch threads for the agent's and the classifier's inference; "
                                                   "one is fastest for these small networks (two threads made a "
                                                   "classifier agent's replay 7x slower on a busy 2-core machine).")
    rest_base_url: str | None = Field(
        _S.rest_base_url, description="Override Binance's REST root (loopback tests): refused in live; in testnet a "
        "loopback address or Binance's testnet host over https only.")
    ws_url: str | None = Field(
        _S.ws_url, description="Override the kline websocket URL (loopback tests): refused in live; in testnet a "
        "loopback address or Binance's testnet over wss only.")
    console_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = Field(
        "WARNING", description="The console stays quiet; everything is in the production log.")

    @model_validator(mode="before")
    @classmethod
    def _train_id_given(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("train_id"):
            latest = latest_run_ids(data.get("project_dir"), "agent")
            listed = (f"; the latest completed: {', '.join(latest)}" if latest
                      else "; no agent run has completed yet: run the agent stage first (quantnb run agent)")
            raise ValueError("train_id is empty: give the run id of the agent stage run whose bundle trades "
                             f"(`quantnb runs --stage agent` lists them){listed}")
        return data

    @model_validator(mode="after")
    def _checked_by_the_session(self) -> LiveParams:
        self.session_settings()  # RiskLimits and SessionSettings check their fields (ConfigError is a ValueError)
        return self

    def session_settings(self) -> SessionSettings:
        """Return the trader's :class:`~quantnb.live.SessionSettings`, each field copied by name (checked there)."""
        names = [f.name for f in dataclasses.fields(SessionSettings) if f.name in type(self).model_fields]
        limits = RiskLimits(**{f.name: getattr(self, f.name) for f in dataclasses.fields(RiskLimits)})
        return SessionSettings(limits=limits, **{n: getattr(self, n) for n in names})

    def run_suffix(self) -> str:
        """Return the mode and the agent's run id without its timestamp (``replay_agent_BTC-PERP_6000steps_clf``)."""
        return f"{self.mode}_{_RUN_TIMESTAMP.sub('', self.train_id)}"


@dataclasses.dataclass
class LiveResult(HtmlResult):
    """Session statistics and the production files of a live run."""

    run_id: str
    stats: SessionStats
    production_log: Path

    def summary(self) -> pl.DataFrame:
        """Print where the files are; return the statistics as a one-row table."""
        s = self.stats
        print(f"Live session {s.session_ts}: {s.steps} bars, {s.trades} trades, PnL {s.pnl_usd:,.2f} USD, "
              f"fees {s.fees_usd:,.2f} USD, max drawdown {s.max_drawdown_frac:.2%}, stopped by {s.stopped_by}")
        print(f"registro: {s.registro_path}\nproduction log: {self.production_log}")
        if s.emergency is not None:
            print(f"EMERGENCY: {s.emergency.cause} -> {s.emergencias_path}")
        flat = {k: v for k, v in s.to_dict().items() if not isinstance(v, dict)}
        return pl.DataFrame([flat])


def _replay_start(params: LiveParams, metadata: Any) -> dt.datetime | None:
    """Return the given start, else the bars after the walk-forward, else the evaluation start (said plainly)."""
    span = getattr(metadata, "data_span", {}) or {}
    text = params.replay_start or (span.get("after_eval") or [None])[0]
    if text is None:
        text = span.get("eval", [None])[0]
        if text is not None:
            logger.warning("Replaying from {}: the agent's evaluation span, data the agent was evaluated and "
                           "selected on (research = live parity, not out-of-sample); walk_forward_holdout_days on "
                           "the agent keeps later bars for the replay", text)
    if text is None:
        return None
    try:
        ts = dt.datetime.fromisoformat(str(text))
    except ValueError:
        raise ConfigError(f"replay_start={text!r}: not an ISO 8601 time; e.g. 2022-01-25T05:31:00+00:00") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=dt.UTC)


def run_live(params: LiveParams) -> LiveResult:
    """Run one trading session and record it.

    Parameters
    ----------
    params : LiveParams
        The validated parameters.

    Returns
    -------
    LiveResult
        Statistics and files. The run is recorded ``completed`` (end of data, ``max_steps``,
        ``duration_s``), ``interrupted`` (SIGTERM/SIGINT) or ``failed`` (the emergency
        protocol ran: drawdown, bad data, connection or critical error).

    Raises
    ------
    ConfigError
        Before any connection: ``live`` without ``confirm_live``, a missing or inconsistent
        bundle, the drawdown halt marker present, missing API key variables, an unreadable
        state file.

    Examples
    --------
    >>> result = run_live(LiveParams(train_id="agent_default_20240101_120000", mode="replay", max_steps=500))
    >>> result.summary()  # the session statistics as a one-row table
    """
    # heavy: imported by the run, not by the runner's parameter validation
    from quantnb.live import StepInfo, build_trader, load_live_config, session_timestamp

    with start_run(params) as ctx:
        cfg = load_live_config(runs_dir(ctx.root), params.train_id, timeframe=params.timeframe)
        session_ts = session_timestamp()
        prod_log = ctx.add_cumulative_log(cfg.out_dir / f"produccion_{session_ts}.log", level="DEBUG",
                                          include_streams=True)
        logger.info("Live session {} in {} mode with bundle {} (production log {})", session_ts, params.mode,
                    cfg.bundle_dir, prod_log)

        def on_step(info: StepInfo) -> None:
            bar_ts = dt.datetime.fromtimestamp(info.bar.open_time_ms / 1000, dt.UTC)
            ctx.item_done(f"bar {bar_ts:%Y-%m-%d %H:%M}", events=1)

        def on_warmup(done: int, total: int) -> None:
            ctx.beat(f"warm-up {done:,}/{total:,} bars of history")

        trader = build_trader(
            cfg, params.session_settings(),
            replay_bars=_replay_files(ctx.root, params.replay_glob) if params.mode == "replay" else None,
            replay_start_ts=_replay_start(params, cfg.bundle.metadata) if params.mode == "replay" else None,
            on_step=on_step, on_warmup=on_warmup, session_ts=session_ts, run_id=ctx.run_id)
        if params.mode == "replay":  # a finite replay: its progress has a total from the start
            ctx.set_total(_replay_total(trader.provider, params.max_steps))
            record_test_spans(ctx, [_replay_span(trader.provider, params.max_steps)],
                              instrument=cfg.bundle.metadata.symbol, what="replay")
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(params.num_threads)
        try:
            stats, stopped = _run_with_stop_signals(trader, params.flatten_on_stop)
        finally:
            torch.set_num_threads(threads)
        summary = stats.to_dict()
        for key, value in summary.items():
            if not isinstance(value, dict):
                logger.info("live/{}={}", key, value)
        ctx.set_result(**summary)
        ctx.record_metrics(pnl_usd=stats.pnl_usd, trades=stats.trades, max_drawdown_frac=stats.max_drawdown_frac,
                           fees_usd=stats.fees_usd, funding_usd=stats.funding_usd, gross_pnl_usd=stats.gross_pnl_usd)
        ctx.add_output("registro", stats.registro_path or cfg.out_dir)
        ctx.add_output("production_log", prod_log)
        if stats.emergency is not None:
            logger.critical("Emergency protocol ran: {}", stats.emergency.cause)
            ctx.add_output("emergencias", stats.emergencias_path or cfg.out_dir)
        ctx.add_output("state", stats.state_path or cfg.out_dir)
        if stats.reconciliation_path is not None:
            ctx.add_output("reconciliation", stats.reconciliation_path)
        if stats.emergency is not None:  # an emergency is a failed session (non-zero exit), even after a signal
            ctx.finish("failed", error=f"emergency: {stats.emergency.cause}: {stats.emergency.detail}")
        elif stopped is not None:
            ctx.finish("interrupted", error=f"stopped by {stopped}")
    return LiveResult(ctx.run_id, stats, prod_log)


def _replay_total(provider: Any, max_steps: int | None) -> int | None:
    """Bars a replay will trade (after its warm-up, at most ``max_steps``); None when the feed cannot say."""
    bars, warmup = getattr(provider, "bars", None), getattr(provider, "history_bars", None)
    if bars is None or warmup is None:
        return None
    n = max(len(bars) - int(warmup), 0)
    return min(n, max_steps) if max_steps else n


def _replay_span(provider: Any, max_steps: int | None) -> tuple[dt.datetime, dt.datetime]:
    """Return the first bar the replay trades and the end of its last (after the warm-up, <= ``max_steps``), UTC."""
    bars, first = provider.bars, int(provider.history_bars)
    last = min(len(bars), first + max_steps) - 1 if max_steps else len(bars) - 1
    return (dt.datetime.fromtimestamp(bars[first].open_time_ms / 1000, dt.UTC),
            dt.datetime.fromtimestamp(bars[last].open_time_ms / 1000 + 60, dt.UTC))


def _run_with_stop_signals(trader: Any, flatten: bool) -> tuple[SessionStats, str | None]:
    """Run the trader with SIGTERM/SIGINT turned into an orderly stop request."""
    stopped: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        return trader.run(), None

    def on_signal(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if not stopped:
            logger.warning("{} received: stopping after this bar{}", name, " and flattening" if flatten else "")
        stopped.append(name)
        trader.request_stop(flatten=flatten)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        stats = trader.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return stats, (stopped[0] if stopped else None)


def _replay_files(root: Path, pattern: str) -> list[str] | str:
    """``replay_glob`` expanded (relative or absolute, ``**``); the pattern if nothing matches (the feed says so)."""
    from quantnb.data import expand_glob

    return [str(f) for f in expand_glob(root, pattern) if f.is_file()] or str(root / pattern)
