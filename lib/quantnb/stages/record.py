"""Record stage: live order books and trades from Bybit v5 or Binance USD-M into raw, Parquet and ClickHouse sinks.

A long papermill-launched run (``quantnb run record``). The venue's websocket streams are
recorded until ``duration_s``, ``max_messages`` or SIGTERM/SIGINT, which flush every sink
and end with the final counters. Files:

- raw: ``<output_dir>/raw/<venue>/<market>/`` in the venue's daily archive format (Bybit
  ``YYYY-MM-DD_<SYMBOL>_ob<depth>.data``, Binance ``<SYMBOL>_<YYYYMMDD>.gz``), which
  ``quantnb run etl`` reads unchanged;
- parquet: ``<output_dir>/parquet/<venue>/<market>/<shard>.parquet``, the normalized events
  table, one shard per ``flush_every_s`` (listed in the checkpoint and the batch TSV), stored
  one row per frame with the levels as lists (``quantnb.record.read_events`` gives one row per
  level);
- clickhouse: view ``quantnb.book_events`` (one row per level) over the MergeTree table
  ``quantnb.book_events_frames``, in embedded chDB under ``clickhouse_path``, or on the server
  at ``clickhouse_url`` (password from ``CLICKHOUSE_PASSWORD``).

After a ``kill -9`` at most the last flush interval is missing; the next run cuts any torn
raw line, inserts the shards ClickHouse lacks, and writes new shards.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

import polars as pl
from loguru import logger
from pydantic import Field, PositiveFloat, PositiveInt, field_validator, model_validator

from quantnb._secrets import refuse_password_in_url
from quantnb.config import StageParams
from quantnb.runlog import start_run

__all__ = ["RecordParams", "RecordResult", "run_record"]

_DEPTHS = {"linear": (1, 50, 200, 500), "spot": (1, 50, 200)}


class RecordParams(StageParams):
    """Parameters of the record stage.

    How long to record and how often to report are not part of the config hash: a resumed
    recording (``quantnb run record --resume <id> -p duration_s 3600``) goes on into new
    shards of the same run with another stop condition.
    """

    stage = "record"
    execution_fields: ClassVar[frozenset[str]] = StageParams.execution_fields | frozenset(
        {"duration_s", "max_messages", "progress_every_s", "log_frames"})
    venue: Literal["bybit", "binance"] = Field("bybit", description="Exchange.")
    market: Literal["linear", "spot", "usdm"] = Field("linear", description="bybit: linear | spot; binance: usdm.")
    symbols: list[str] = Field(default_factory=lambda: ["BTCUSDT"], min_length=1, description="Exchange symbols.")
    depth: PositiveInt = Field(200, description="Bybit book depth (1, 50, 200, 500); Binance: REST snapshot levels "
                                            "(rounded up to 5, 10, 20, 50, 100, 500 or 1000).")
    channels: list[Literal["book", "trades", "bbo"]] = Field(
        default_factory=lambda: ["book", "trades"], min_length=1,
        description="book (order book), trades, bbo (Binance bookTicker).")
    duration_s: PositiveFloat | None = Field(None, description="Stop after this many seconds; None: until stopped.")
    max_messages: PositiveInt | None = Field(None, description="Stop after this many frames; None: no limit.")
    ws_url: str | None = Field(None, description="Websocket URL/root; None: the venue's production endpoint.")
    rest_url: str | None = Field(None, description="Binance REST root for depth snapshots; None: production.")
    output_dir: str = Field("data/recorded", description="raw/ and parquet/ go under it, relative to the project.")
    sinks: list[Literal["raw", "parquet", "clickhouse"]] = Field(
        default_factory=lambda: ["raw", "parquet"], min_length=1, description="Where the frames go.")
    clickhouse_url: str | None = Field(None, description="ClickHouse server http(s)://user@host:port/db; None: chDB.")
    clickhouse_path: str = Field("data/clickhouse", description="Embedded chDB folder, relative to the project.")
    clickhouse_table: str = Field("quantnb.book_events",
                                  description="database.name of the events view (the table is <name>_frames).")
    flush_every_s: PositiveFloat = Field(5.0, description="Sink flush period, seconds (the most a kill -9 loses).")
    progress_every_s: PositiveFloat = Field(60.0, description="Progress report period, seconds.")
    binance_depth_speed: Literal["100ms", "0ms", "250ms", "500ms"] = Field(
        "100ms", description="Binance diff-depth stream speed: <symbol>@depth@<speed> (0ms: every update).")
    log_frames: bool = Field(False, description="Log every frame at DEBUG (session log only; slows recording).")

    @field_validator("clickhouse_url")
    @classmethod
    def _no_password_in_clickhouse_url(cls, value: str | None) -> str | None:
        return value and refuse_password_in_url(value, what="clickhouse_url", env="CLICKHOUSE_PASSWORD")

    @model_validator(mode="after")
    def _check(self) -> RecordParams:
        if self.venue == "bybit" and self.market not in ("linear", "spot"):
            raise ValueError(f"market={self.market!r}: Bybit markets are 'linear' or 'spot'")
        if self.venue == "binance" and self.market != "usdm":
            raise ValueError(f"market={self.market!r}: the Binance recorder records USD-M futures; use 'usdm'")
        if self.venue == "bybit" and self.depth not in _DEPTHS[self.market]:
            raise ValueError(f"depth={self.depth}: Bybit {self.market} order-book depths are "
                             f"{', '.join(map(str, _DEPTHS[self.market]))}")
        if self.venue == "bybit" and "bbo" in self.channels:
            raise ValueError("channels: 'bbo' is a Binance stream (bookTicker); Bybit's top of book is orderbook.1")
        if "clickhouse" in self.sinks and "parquet" not in self.sinks:
            raise ValueError("sinks: 'clickhouse' needs 'parquet' too (shards are inserted from Parquet, and "
                             "stay there for backfill when an insert fails)")
        return self

    def run_suffix(self) -> str:
        """Return venue, market and the first symbols, e.g. ``bybit-linear-BTCUSDT``."""
        return f"{self.venue}-{self.market}-{'-'.join(self.symbols[:3])}"[:48]


@dataclasses.dataclass
class RecordResult:
    """What a recording session wrote.

    Attributes
    ----------
    run_id, status : str
    report : dict
        Final counters: totals, ``per_symbol`` counters, ``sink_bytes``, shards.
    raw_dir, parquet_dir : pathlib.Path or None
        Where the files are.
    clickhouse_table : str or None
        The ClickHouse events view (``database.name``; the table is ``<name>_frames``), if that sink ran.
    """

    run_id: str
    status: str
    report: dict[str, Any]
    raw_dir: Path | None
    parquet_dir: Path | None
    clickhouse_table: str | None = None

    def summary(self) -> pl.DataFrame:
        """Print totals, where each sink wrote and how to read it; return the per-symbol counters as a table.

        Returns
        -------
        polars.DataFrame
            One row per symbol: the counters (snapshots, deltas, trades, gaps, resyncs, ...).
        """
        r = self.report
        why = {"stop": "an interrupt or SIGTERM (every sink flushed)", "duration": "duration_s",
               "max_messages": "max_messages", "error": "an error (see the session log)"}
        stopped = f", stopped by {why.get(r['stopped_by'], r['stopped_by'])}" if r.get("stopped_by") else ""
        print(f"Record run {self.run_id}: {self.status}, {r.get('messages', 0):,} messages "
              f"({r.get('msgs_per_s', 0):,.0f} msgs/s){stopped}")
        if self.raw_dir is not None:
            print(f"raw: {self.raw_dir} (read by `quantnb run etl` unchanged)")
        if self.parquet_dir is not None:
            print(f"parquet: {self.parquet_dir}: {r.get('shards', 0)} shard(s), {r.get('parquet_rows', 0):,} events "
                  "(quantnb.record.read_events(folder): one row per level or trade)")
        if self.clickhouse_table is not None:
            backlog = r.get("clickhouse_backlog") or []
            print(f"clickhouse: view {self.clickhouse_table} (table {self.clickhouse_table}_frames): "
                  f"{r.get('clickhouse_rows', 0):,} events inserted by this run; "
                  + (f"{len(backlog)} shard(s) to backfill (the next run inserts them)" if backlog else "no backlog"))
        if r.get("backpressure_pauses"):
            print(f"the sinks fell behind the stream {r['backpressure_pauses']} time(s): reading paused until the "
                  "flush ended (nothing lost; a faster disk or fewer symbols per recorder avoids it)")
        rows = [{"symbol": s, **c} for s, c in r.get("per_symbol", {}).items()]
        return pl.DataFrame(rows)


def run_record(params: RecordParams) -> RecordResult:
    """Record the venue's streams into the chosen sinks until a stop condition or a signal.

    Parameters
    ----------
    params : RecordParams
        The validated stage parameters (venue, symbols, sinks, stop conditions).

    Returns
    -------
    RecordResult

    Raises
    ------
    ConfigError
        Invalid parameters (before any connection); a password in ``clickhouse_url``.
    """
    from quantnb.record import Recorder, RecorderConfig

    with start_run(params) as ctx:
        out = (ctx.root / params.output_dir).resolve()
        tag = Path(params.venue) / params.market  # the exchange's folder layout: the ETL reads the market from it
        raw_dir = out / "raw" / tag if "raw" in params.sinks else None
        parquet_dir = out / "parquet" / tag if "parquet" in params.sinks else None
        prefix = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}_{os.getpid()}"
        cfg = RecorderConfig(
            venue=params.venue, market=params.market, symbols=tuple(s.upper() for s in params.symbols),
            depth=params.depth, channels=tuple(params.channels), ws_url=params.ws_url, rest_url=params.rest_url,
            raw_dir=raw_dir, parquet_dir=parquet_dir, clickhouse="clickhouse" in params.sinks,
            clickhouse_url=params.clickhouse_url, clickhouse_path=(ctx.root / params.clickhouse_path).resolve(),
            clickhouse_table=params.clickhouse_table, flush_every_s=params.flush_every_s,
            progress_every_s=params.progress_every_s, duration_s=params.duration_s,
            max_messages=params.max_messages, shard_prefix=prefix, log_frames=params.log_frames,
            binance_depth_speed=params.binance_depth_speed)
        for name, path in (("raw_dir", raw_dir), ("parquet_dir", parquet_dir)):
            if path is not None:
                ctx.add_output(name, path)
                logger.info("{} sink: {}", name.removesuffix("_dir"), path)
        state = {"n": 0}

        def on_shard(path: Path, rows: int, frames: int, in_ch: bool | None) -> None:
            n = state["n"]
            state["n"] += 1
            items = [f"parquet/{path.name}"] + ([f"clickhouse/{path.stem}"] if in_ch else [])
            ctx.checkpoint.mark_completed(*items)
            if in_ch is False:
                ctx.checkpoint.mark_failed(f"clickhouse/{path.stem}", "insert failed; the shard stays in Parquet "
                                           "and is inserted by the next run (backfill)")
            ctx.batch_saved(n, frames, rows, path)
            c = rec.counters  # the progress line (widget, heartbeat) says how the stream goes, not only the shard
            ctx.item_done(f"shard {path.name} · {rec.messages:,} msgs · gaps {c.total('gaps')} · resyncs "
                          f"{c.total('resyncs')} · reconnects {c.total('reconnects')}", events=frames, batch_num=n)

        def on_progress(rep: dict[str, Any]) -> None:
            ctx.heartbeat.update(force=True, recorder=rep)

        rec = Recorder(cfg, on_shard=on_shard, on_progress=on_progress)
        interrupted: BaseException | None = None
        try:
            rec.run_in_thread()
        except KeyboardInterrupt as exc:
            interrupted = exc
        rep = rec.report()
        rep["stopped_by"] = rec.stopped_by
        ctx.set_result(**rep)
        ctx.heartbeat.update(force=True, recorder=rep)
        keys = ("messages", "snapshots", "deltas", "trades", "gaps", "resyncs", "reconnects", "msgs_per_s")
        for key in keys:  # one greppable metric line each, in the session log
            logger.debug("record/{}={}", key, rep.get(key))
        logger.info("Recorded {:,} messages ({:,.0f} msgs/s): {:,} snapshot(s), {:,} deltas, {:,} trades; {} gap(s), "
                    "{} resync(s), {} reconnect(s){}", rep.get("messages", 0), rep.get("msgs_per_s", 0),
                    rep.get("snapshots", 0), rep.get("deltas", 0), rep.get("trades", 0), rep.get("gaps", 0),
                    rep.get("resyncs", 0), rep.get("reconnects", 0),
                    f"; reading paused {rep['backpressure_pauses']} time(s) while the sinks caught up"
                    if rep.get("backpressure_pauses") else "")
        if interrupted is not None:
            ctx.finish("interrupted", error=f"stopped by a signal ({interrupted}); every sink was flushed")
        elif rep.get("clickhouse_backlog"):
            ctx.finish("completed_with_errors", error=f"{len(rep['clickhouse_backlog'])} shard(s) not in ClickHouse "
                       "(they are in Parquet; the next run backfills them)")
    return RecordResult(ctx.run_id, ctx.status, rep, raw_dir, parquet_dir,
                        params.clickhouse_table if "clickhouse" in params.sinks else None)
