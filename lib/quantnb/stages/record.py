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
from typing import Any, ClassVar, Literal, cast

import polars as pl
from loguru import logger
from pydantic import Field, PositiveFloat, PositiveInt, field_validator, model_validator

from quantnb._paths import project_root
from quantnb._secrets import refuse_password_in_url
from quantnb.config import OutputDir, StageParams, resolve_output_dir
from quantnb.display import HtmlResult
from quantnb.errors import ConfigError
from quantnb.record import CLICKHOUSE_PATH, ClickHouseConnection, Recorder, RecorderConfig
from quantnb.runs import start_run

__all__ = ["RecordParams", "RecordResult", "run_record", "open_clickhouse", "ClickHouseQuery"]

_DEPTHS = {"linear": (1, 50, 200, 500), "spot": (1, 50, 200)}
_R = RecorderConfig  # the recorder's settings and their defaults: written there once, read here
Channel = Literal["book", "trades", "bbo"]
Sink = Literal["raw", "parquet", "clickhouse"]
DepthSpeed = Literal["100ms", "0ms", "250ms", "500ms"]


class RecordParams(StageParams):
    """Parameters of the record stage.

    How long to record and how often to report are not part of the config hash: a resumed
    recording (``quantnb run record --resume <id> -p duration_s 3600``) goes on into new
    shards of the same run with another stop condition.

    The fields the recorder shares take their defaults from
    :class:`~quantnb.record.RecorderConfig`, and :meth:`recorder_config` copies every one
    of them by name: nothing is written twice.
    """

    stage = "record"
    execution_fields: ClassVar[frozenset[str]] = StageParams.execution_fields | frozenset(
        {"duration_s", "max_messages", "progress_every_s", "log_frames", "stale_after_s", "book_stale_after_s"})
    venue: Literal["bybit", "binance"] = Field("bybit", description="Exchange.")
    market: Literal["linear", "spot", "usdm"] = Field("linear", description="bybit: linear | spot; binance: usdm.")
    symbols: list[str] = Field(default_factory=lambda: ["BTCUSDT"], min_length=1, description="Exchange symbols.")
    depth: PositiveInt = Field(_R.depth, description="Bybit book depth (1, 50, 200, 500); Binance: REST snapshot "
                                                     "levels (rounded up to 5, 10, 20, 50, 100, 500 or 1000).")
    channels: list[Channel] = Field(
        default_factory=lambda: cast(list[Channel], list(_R.channels)), min_length=1,
        description="book (order book), trades, bbo (Binance bookTicker).")
    duration_s: PositiveFloat | None = Field(_R.duration_s, allow_inf_nan=False,
                                             description="Stop after this many seconds; None: until stopped.")
    max_messages: PositiveInt | None = Field(_R.max_messages,
                                             description="Stop after this many frames; None: no limit.")
    ws_url: str | None = Field(_R.ws_url, description="Websocket URL/root; None: the venue's production endpoint.")
    rest_url: str | None = Field(_R.rest_url, description="Binance REST root for depth snapshots; None: production.")
    output_dir: OutputDir = Field("data/recorded", description="raw/ and parquet/ go under it: an absolute folder "
                                  "or one relative to the project.")
    sinks: list[Sink] = Field(
        default_factory=lambda: cast(list[Sink], ["raw", "parquet"]), min_length=1, description="Where the frames go.")
    clickhouse_url: str | None = Field(_R.clickhouse_url,
                                       description="ClickHouse server http(s)://user@host:port/db; None: chDB.")
    clickhouse_path: OutputDir = Field(CLICKHOUSE_PATH, description="Embedded chDB folder: absolute or relative "
                                      "to the project.")
    clickhouse_table: str = Field(_R.clickhouse_table,
                                  description="database.name of the events view (the table is <name>_frames); "
                                              "letters, digits, '_' and '.' only.")
    flush_every_s: PositiveFloat = Field(_R.flush_every_s, allow_inf_nan=False,
                                         description="Sink flush period, seconds (the most a kill -9 loses).")
    progress_every_s: PositiveFloat = Field(_R.progress_every_s, allow_inf_nan=False,
                                            description="Progress report period, seconds.")
    stale_after_s: PositiveFloat | None = Field(
        _R.stale_after_s, allow_inf_nan=False, description="Liveness: a connection with no data frame (pongs do not "
        "count) for this long is closed, reconnected and resynced, seconds; None: not checked.")
    book_stale_after_s: PositiveFloat | None = Field(
        _R.book_stale_after_s, allow_inf_nan=False, description="Liveness per channel: a symbol whose book sends "
        "nothing for this long is resynced the same way, seconds; None: not checked. Trades are not timed (a quiet "
        "market is normal).")
    binance_depth_speed: DepthSpeed = Field(
        cast(DepthSpeed, _R.binance_depth_speed),
        description="Binance diff-depth stream speed: <symbol>@depth@<speed> (0ms: every update).")
    log_frames: bool = Field(_R.log_frames, description="Log every frame at DEBUG (session log only; slows recording).")

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
        from quantnb.record import check_identifier

        check_identifier(self.clickhouse_table)  # it is spliced into SQL text
        if "clickhouse" in self.sinks and "parquet" not in self.sinks:
            raise ValueError("sinks: 'clickhouse' needs 'parquet' too (shards are inserted from Parquet, and "
                             "stay there for backfill when an insert fails)")
        return self

    def recorder_config(self, root: Path, **where: Any) -> RecorderConfig:
        """Return the recorder's config: each field it shares with these parameters, copied by name.

        Parameters
        ----------
        root : pathlib.Path
            Project directory (a relative ``clickhouse_path`` is taken from it).
        **where
            What the stage derives: ``raw_dir``, ``parquet_dir``, ``quarantine_dir``, ``shard_prefix``.
        """
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(RecorderConfig)
                  if f.name in type(self).model_fields}
        shared.update(symbols=tuple(s.upper() for s in self.symbols), channels=tuple(self.channels),
                      clickhouse_path=resolve_output_dir(self.clickhouse_path, root),
                      clickhouse="clickhouse" in self.sinks)
        return RecorderConfig(**shared, **where)

    def run_suffix(self) -> str:
        """Return venue, market and the first symbols, e.g. ``bybit-linear-BTCUSDT``."""
        return f"{self.venue}-{self.market}-{'-'.join(self.symbols[:3])}"[:48]


@dataclasses.dataclass
class RecordResult(HtmlResult):
    """What a recording session wrote."""

    run_id: str
    status: str
    report: dict[str, Any]  # final counters: totals, per_symbol, sink_bytes, shards
    raw_dir: Path | None
    parquet_dir: Path | None
    clickhouse_table: str | None = None  # the events view database.name (table <name>_frames), if that sink ran

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
        if r.get("bad_frames"):
            print(f"{r['bad_frames']} bad frame(s) (undecodable) quarantined in {r.get('quarantine_file')}; the "
                  "books resynced")
        for key, what in (("nan_prices", "frame(s) with a NaN/inf price"), ("crossed", "crossed-book frame(s)"),
                          ("stalls", "silent stream(s) reconnected (liveness timeout)")):
            if r.get(key):
                print(f"{r[key]} {what}")
        if r.get("clickhouse_error"):
            print(f"clickhouse: not recorded: {r['clickhouse_error'][:300]}")
        if r.get("unflushed_frames"):
            print(f"{r['unflushed_frames']} frame(s) could not be written (disk full?); see the session log")
        elif r.get("flush_failures"):
            print(f"{r['flush_failures']} flush(es) failed and were retried; nothing lost")
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

    Examples
    --------
    >>> result = run_record(RecordParams(venue="bybit", symbols=["BTCUSDT"], duration_s=60))
    >>> result.summary()  # per-symbol counters: snapshots, deltas, trades, gaps
    """
    with start_run(params) as ctx:
        out = resolve_output_dir(params.output_dir, ctx.root)
        tag = Path(params.venue) / params.market  # the exchange's folder layout: the ETL reads the market from it
        raw_dir = out / "raw" / tag if "raw" in params.sinks else None
        parquet_dir = out / "parquet" / tag if "parquet" in params.sinks else None
        prefix = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}_{os.getpid()}"
        cfg = params.recorder_config(ctx.root, raw_dir=raw_dir, parquet_dir=parquet_dir, shard_prefix=prefix,
                                     quarantine_dir=out / "quarantine" / tag)
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
        if rep.get("bad_frames"):
            logger.warning("{} bad frame(s) quarantined in {} (the books resynced; recording went on)",
                           rep["bad_frames"], rep.get("quarantine_file"))
        if rep.get("unflushed_frames"):
            ctx.finish("failed", error=f"{rep['unflushed_frames']} frame(s) could not be written by the final flush "
                       f"({rep['sink_errors'][-1] if rep['sink_errors'] else 'sink error'}); free disk space before "
                       "the next run")
        elif interrupted is not None:
            ctx.finish("interrupted", error=f"stopped by a signal ({interrupted}); every sink was flushed")
        elif rep.get("clickhouse_error"):
            ctx.finish("completed_with_errors", error=f"ClickHouse sink unavailable ({rep['clickhouse_error'][:300]}); "
                       "raw and Parquet recorded everything; the next run inserts the shards (backfill)")
        elif rep.get("flush_failures"):
            ctx.finish("completed_with_errors", error=f"{rep['flush_failures']} flush(es) failed "
                       f"({rep['sink_errors'][-1] if rep['sink_errors'] else ''}); their frames were kept and "
                       "written by a later flush, nothing lost")
        elif rep.get("clickhouse_backlog"):
            ctx.finish("completed_with_errors", error=f"{len(rep['clickhouse_backlog'])} shard(s) not in ClickHouse "
                       "(they are in Parquet; the next run backfills them)")
    return RecordResult(ctx.run_id, ctx.status, rep, raw_dir, parquet_dir,
                        params.clickhouse_table if "clickhouse" in params.sinks else None)


class ClickHouseQuery(ClickHouseConnection):
    """The recorder's ClickHouse opened for queries (see :func:`open_clickhouse`); results as polars frames.

    Parameters
    ----------
    session : chdb.session.Session or None
        An embedded chDB session.
    client : clickhouse_connect client or None
        A server client (when ``session`` is None).
    where : str
        The folder or server, for messages.
    """

    def __init__(self, session: Any = None, client: Any = None, where: str = "") -> None:
        self._session, self._client, self.where = session, client, where

    def query(self, sql: str) -> pl.DataFrame:
        """Run ``sql`` and return its result.

        Parameters
        ----------
        sql : str
            A ClickHouse query, e.g. ``SELECT count() FROM quantnb.book_events``.

        Returns
        -------
        polars.DataFrame
            The result, one column per selected expression (ClickHouse types mapped by Arrow).
        """
        if self._session is not None:
            return cast(pl.DataFrame, pl.from_arrow(self._session.query(sql, "ArrowTable")))
        return cast(pl.DataFrame, pl.from_arrow(self._client.query_arrow(sql)))

    def __enter__(self) -> ClickHouseQuery:  # noqa: D105
        return self

    def __exit__(self, *exc: object) -> None:  # noqa: D105
        self.close()


def open_clickhouse(path: str | os.PathLike[str] | None = None, *, url: str | None = None,
                    project_dir: str | None = None) -> ClickHouseQuery:
    """Open the ClickHouse the record stage writes, for queries.

    Embedded chDB by default, at the record stage's ``clickhouse_path`` default
    (``data/clickhouse``) taken from the project directory, whatever the working
    directory (a notebook's is ``notebooks/``); a server with ``url``
    (``http(s)://user@host:port/db``, the password from ``CLICKHOUSE_PASSWORD``).

    Parameters
    ----------
    path : str, os.PathLike or None
        The chDB folder the recorder wrote (its ``clickhouse_path``): absolute, or
        relative to the project. None: the default.
    url : str or None
        A ClickHouse server instead of the embedded chDB.
    project_dir : str or None
        Project directory; found from the working directory (or ``QUANTNB_HOME``) if None.

    Returns
    -------
    ClickHouseQuery
        ``.query(sql) -> polars.DataFrame``; close it (or use ``with``) before a recorder
        opens the same chDB folder.

    Raises
    ------
    ConfigError
        If the chDB folder does not exist (nothing recorded there: it is not created
        empty), or ``url`` carries a password.
    """
    if url is not None:
        from quantnb.record import clickhouse_server_client

        return ClickHouseQuery(client=clickhouse_server_client(url, "url"), where=url)
    import chdb.session

    given = path if path is not None else RecordParams.model_fields["clickhouse_path"].default
    folder = resolve_output_dir(given, project_root(project_dir))
    if not folder.is_dir():
        raise ConfigError(f"open_clickhouse: no ClickHouse data at {folder} (path={str(given)!r}, relative paths "
                          "are taken from the project); record with -p sinks '[raw, parquet, clickhouse]' first, "
                          "or pass the recorder's clickhouse_path")
    return ClickHouseQuery(session=chdb.session.Session(str(folder)), where=str(folder))
