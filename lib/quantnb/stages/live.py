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
from quantnb.display import result_html
from quantnb.errors import ConfigError
from quantnb.runlog import record_test_spans, start_run
from quantnb.stages._links import latest_run_ids

if TYPE_CHECKING:
    from quantnb.live import SessionStats

__all__ = ["LiveParams", "LiveResult", "run_live"]


_RUN_TIMESTAMP = re.compile(r"_\d{8}_\d{6}$")  # the UTC stamp that ends every run id

class LiveParams(StageParams):
    """Parameters of the live stage. API keys are never parameters: they come from the environment."""

    stage = "live"
    train_id: str = Field("", description="Run id of the agent stage whose bundle trades (quantnb runs --stage "
                                          "agent lists them).")
    mode: Literal["replay", "testnet", "live"] = Field("replay", description="replay (paper), testnet or live.")
    symbol: str | None = Field(None, description="Exchange symbol for testnet/live, e.g. BTCUSDT.")
    timeframe: str = Field("1m", description="Bar interval; must match the bundle's.")
    replay_glob: str = Field("data/processed/unknown/perp/BTC-PERP/*.parquet", description="Processed bars to replay.")
    replay_start: str | None = Field(
        None, description="First traded bar (ISO 8601, UTC); default the bars after the agent's walk-forward "
                          "(walk_forward_holdout_days), else its evaluation start.")
    replay_speed: float = Field(0.0, ge=0, description="Replay speed factor (60: a 1-minute bar per second); 0: max.")
    max_drawdown_frac: float = Field(0.2, gt=0, lt=1, description="Drawdown from peak equity that triggers the "
                                                                  "emergency protocol.")
    max_position_frac: float = Field(1.0, gt=0, le=5, description="Largest |position| as a fraction of equity.")
    fee_bps: float | None = Field(None, ge=0, description="Paper fee override, bps; default the bundle's.")
    initial_equity_usd: PositiveFloat | None = Field(None, description="Paper equity; default the bundle's.")
    max_steps: PositiveInt | None = Field(None, description="Stop after this many bars.")
    duration_s: PositiveFloat | None = Field(None, description="Stop after this many seconds.")
    confirm_live: bool = Field(False, description="Must be True for mode='live' (real money).")
    flatten_on_stop: bool = Field(True, description="On SIGTERM/SIGINT, close positions before stopping.")
    fresh_start: bool = Field(False, description="Set aside the recorded trader state of this train_id and mode "
                                                 "(new account, new peak equity); logged at WARNING. By default a "
                                                 "session continues the recorded one.")
    max_bad_bars: PositiveInt = Field(3, description="Consecutive rejected bars (NaN/Inf, non-positive, inconsistent "
                                                     "OHLC) that trigger the emergency protocol.")
    max_order_rejections: PositiveInt = Field(3, description="Consecutive orders refused by the venue (e.g. -2019 "
                                                             "Margin is insufficient) that trigger the emergency "
                                                             "protocol; one refusal is a registro row "
                                                             "(order_rejected) and the bar is skipped.")
    stale_warn_bars: PositiveInt = Field(2, description="testnet/live: bars with no complete candle (stream open but "
                                                        "silent, or a needed order-book column missing) before a "
                                                        "WARNING and a REST fallback for the missed candles.")
    stale_emergency_bars: PositiveInt = Field(5, description="testnet/live: missed bars (REST gave none either) that "
                                                             "trigger the emergency protocol (cause stale_feed).")
    stop_timeout_s: PositiveFloat = Field(20.0, lt=30.0, description="After SIGTERM/SIGINT the state is saved as "
                                                                      "'reducing' at once; a flatten not confirmed "
                                                                      "within this many seconds is recorded in "
                                                                      "emergencias (before the runner's 30 s kill).")
    num_threads: PositiveInt = Field(1, description="torch threads for the agent's and the classifier's inference; "
                                                   "one is fastest for these small networks (two threads made a "
                                                   "classifier agent's replay 7x slower on a busy 2-core machine).")
    rest_base_url: str | None = Field(None, description="Override Binance's REST root (loopback tests): refused in "
                                                        "live; in testnet a loopback address or Binance's testnet "
                                                        "host over https only.")
    ws_url: str | None = Field(None, description="Override the kline websocket URL (loopback tests): refused in live; "
                                                 "in testnet a loopback address or Binance's testnet over wss only.")
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
    def _live_needs_confirmation(self) -> LiveParams:
        if self.mode == "live" and not self.confirm_live:
            raise ValueError("mode='live' trades real money: set confirm_live=True to confirm (nothing was sent)")
        if self.stale_emergency_bars <= self.stale_warn_bars:
            raise ValueError(f"stale_emergency_bars={self.stale_emergency_bars} must exceed stale_warn_bars="
                             f"{self.stale_warn_bars}: the REST fallback comes before the emergency")
        if self.rest_base_url is not None or self.ws_url is not None:  # rare: the rule's module only then
            from quantnb.live._endpoints import check_endpoint_override

            check_endpoint_override(self.mode, "rest_base_url", self.rest_base_url)
            check_endpoint_override(self.mode, "ws_url", self.ws_url)
        return self

    def run_suffix(self) -> str:
        """Return the mode and the agent's run id without its timestamp (``replay_agent_BTC-PERP_6000steps_clf``)."""
        return f"{self.mode}_{_RUN_TIMESTAMP.sub('', self.train_id)}"


@dataclasses.dataclass
class LiveResult:
    """Session statistics and the production files of a live run."""

    run_id: str
    stats: SessionStats
    production_log: Path

    def _repr_html_(self) -> str:  # noqa: D105 (the notebook's display of the result)
        return result_html(self)

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
    """
    # heavy: imported by the run, not by the runner's parameter validation
    from quantnb.live import RiskLimits, StepInfo, build_trader, load_live_config, session_timestamp

    with start_run(params) as ctx:
        cfg = load_live_config(ctx.root / "runs", params.train_id, timeframe=params.timeframe)
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
            cfg, mode=params.mode, symbol=params.symbol,
            limits=RiskLimits(params.max_drawdown_frac, params.max_position_frac),
            replay_bars=_replay_files(ctx.root, params.replay_glob) if params.mode == "replay" else None,
            replay_start_ts=_replay_start(params, cfg.bundle.metadata) if params.mode == "replay" else None,
            replay_speed=params.replay_speed, initial_equity_usd=params.initial_equity_usd, fee_bps=params.fee_bps,
            max_steps=params.max_steps, duration_s=params.duration_s, confirm_live=params.confirm_live,
            on_step=on_step, rest_base_url=params.rest_base_url, ws_url=params.ws_url, session_ts=session_ts,
            fresh_start=params.fresh_start, max_bad_bars=params.max_bad_bars, run_id=ctx.run_id,
            max_order_rejections=params.max_order_rejections, stale_warn_bars=params.stale_warn_bars,
            stale_emergency_bars=params.stale_emergency_bars, stop_timeout_s=params.stop_timeout_s,
            on_warmup=on_warmup)
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
    bars, warmup = getattr(provider, "bars", None), getattr(provider, "warmup_bars", None)
    if bars is None or warmup is None:
        return None
    n = max(len(bars) - int(warmup), 0)
    return min(n, max_steps) if max_steps else n


def _replay_span(provider: Any, max_steps: int | None) -> tuple[dt.datetime, dt.datetime]:
    """Return the first bar the replay trades and the end of its last (after the warm-up, <= ``max_steps``), UTC."""
    bars, first = provider.bars, int(provider.warmup_bars)
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
