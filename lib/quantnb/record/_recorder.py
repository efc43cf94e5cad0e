"""The recorder: one venue client, its live books, the sinks, periodic flushes and progress reports.

Guarantees: one recorder per output folder (:class:`~quantnb.record._guard.FolderLock`); a
frame that cannot be decoded is quarantined and counted, the recording goes on; a failed
flush keeps every frame for the next one (exactly once) and is counted in ``sink_errors``;
frames a final flush could not write are counted in ``unflushed_frames``; a ClickHouse
sink that cannot open leaves raw and Parquet recording (``clickhouse_error``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from loguru import logger

from quantnb.errors import ConfigError
from quantnb.record._binance_client import BinanceClient
from quantnb.record._clickhouse import ClickHouseSink
from quantnb.record._clients import (
    BINANCE_REST_URL,
    BINANCE_WS_URL,
    BYBIT_URLS,
    BybitClient,
    Counters,
)
from quantnb.record._guard import FolderLock, Quarantine
from quantnb.record._sinks import ParquetSink, RawSink

_T = TypeVar("_T")

__all__ = ["Recorder", "RecorderConfig", "CLICKHOUSE_PATH"]

CLICKHOUSE_PATH = "data/clickhouse"  # the embedded chDB folder, relative to the project (the record stage's default)

_BINANCE_LIMITS = (5, 10, 20, 50, 100, 500, 1000)  # GET /fapi/v1/depth accepted limits


@dataclasses.dataclass(frozen=True)
class RecorderConfig:
    """What to record and where (see :class:`quantnb.stages.record.RecordParams` for each field).

    Paths are absolute. ``clickhouse_path`` is the embedded chDB folder (used when
    ``clickhouse_url`` is None). ``quarantine_dir`` (default: ``quarantine`` beside the raw
    or Parquet folder) receives the frames that could not be decoded.
    ``stale_after_s``/``book_stale_after_s``: liveness timeouts of a connection (no data
    frame) and of each symbol's book channel, seconds (None: not checked).

    Raises
    ------
    ConfigError
        A non-finite or non-positive ``flush_every_s``/``duration_s``/timeout.
    """

    venue: str
    market: str
    symbols: tuple[str, ...]
    depth: int = 200
    channels: tuple[str, ...] = ("book", "trades")
    ws_url: str | None = None
    rest_url: str | None = None
    raw_dir: Path | None = None
    parquet_dir: Path | None = None
    clickhouse: bool = False
    clickhouse_url: str | None = None
    clickhouse_path: Path | None = None
    clickhouse_table: str = "quantnb.book_events"
    flush_every_s: float = 5.0
    progress_every_s: float = 60.0
    duration_s: float | None = None
    max_messages: int | None = None
    shard_prefix: str = "events"
    backoff_base_s: float = 0.5
    ping_every_s: float = 20.0
    max_batch_frames: int = 50_000
    log_frames: bool = False
    binance_depth_speed: str = "100ms"
    quarantine_dir: Path | None = None
    stale_after_s: float | None = 30.0
    book_stale_after_s: float | None = 60.0
    snapshot_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("flush_every_s", "progress_every_s", "duration_s", "stale_after_s", "book_stale_after_s",
                     "snapshot_timeout_s"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and 0 < v < float("inf")):
                raise ConfigError(f"RecorderConfig {name}={v!r}: must be a finite number of seconds > 0"
                                  + (" (or None)" if name in ("duration_s", "stale_after_s", "book_stale_after_s")
                                     else ""))


OnShard = Callable[[Path, int, int, bool | None], None]


class Recorder:
    """Record one venue's streams into the configured sinks until stopped.

    Parameters
    ----------
    cfg : RecorderConfig
    on_shard : callable, optional
        ``on_shard(path, rows, frames, in_clickhouse)`` after each Parquet shard is written
        (``in_clickhouse`` None without the ClickHouse sink).
    on_progress : callable, optional
        ``on_progress(report)`` every ``progress_every_s`` and at the end; ``report`` is
        :meth:`report`'s dict.

    Attributes
    ----------
    counters : Counters
        Per-symbol counters.
    messages : int
        Frames received (REST snapshots included).
    stopped_by : str or None
        ``duration``, ``max_messages``, ``stop`` (a signal or :meth:`request_stop`) or ``error``.
    backpressure_pauses : int
        Times reading the socket was paused because the sinks fell two batches
        (``max_batch_frames``) behind; in the reports as ``backpressure_pauses``.
    sink_errors : list of str
        One line per failed flush (the frames were kept and written by a later flush).
    unflushed_frames : int
        Frames the final flush could not write (lost: the run is then ``failed``).
    clickhouse_error : str or None
        Why the ClickHouse sink could not open (raw and Parquet recorded all the same).

    Raises
    ------
    ConfigError
        From :meth:`arun`: another recorder holds one of the output folders (naming its pid).
    """

    def __init__(self, cfg: RecorderConfig, *, on_shard: OnShard | None = None,
                 on_progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.cfg = cfg
        self.on_shard = on_shard
        self.on_progress = on_progress
        self.counters = Counters(list(cfg.symbols))
        self.messages = 0
        self.stopped_by: str | None = None
        # the sinks open in arun, once the folders are locked (a ParquetSink removes temp files it finds)
        self.raw: RawSink | None = None
        self.parquet: ParquetSink | None = None
        self.clickhouse: ClickHouseSink | None = None
        self.client: BybitClient | BinanceClient | None = None
        self._log_frames = cfg.log_frames
        self._write_fns: list[Callable[..., None]] = []
        base = cfg.raw_dir or cfg.parquet_dir
        q = cfg.quarantine_dir or (base.parent / "quarantine" if base is not None else None)
        self.quarantine = Quarantine(q, cfg.shard_prefix)  # no folder (a book feed without sinks): counted only
        self.sink_errors: list[str] = []
        self.clickhouse_error: str | None = None
        self.unflushed_frames = 0
        self._failing = 0  # failed flushes in a row
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._flush_now: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._t0 = time.monotonic()
        self._last_report = (self._t0, 0)
        self._flushing = False
        self.backpressure_pauses = 0
        self.started = threading.Event()

    # -- frames -----------------------------------------------------------------------------
    def on_frame(self, kind: str, symbol: str, recv_ns: int, exch_ms: int, text: bytes,
                 decoded: Any = None) -> None:
        """Hand one frame (and the client's decoded form of it, if any) to every sink.

        Parameters
        ----------
        kind : str
            Frame kind (``BYBIT_BOOK``, ``BYBIT_TRADE``, ``BINANCE_DEPTH``, ``BINANCE_TRADE``,
            ``BINANCE_BBO`` or ``BINANCE_SNAPSHOT``).
        symbol : str
            Exchange symbol, e.g. ``BTCUSDT``.
        recv_ns : int
            Local receive time, nanoseconds since the Unix epoch (UTC).
        exch_ms : int
            Exchange timestamp, milliseconds since the Unix epoch (Bybit frames); 0 for Binance frames.
        text : bytes
            The frame exactly as received (for a snapshot, the REST response body).
        decoded : Any, optional
            The client's decoded form of a book frame (``BybitBookMsg`` or the ETL's depth event), if any.
        """
        if self.cfg.max_messages is not None and self.messages >= self.cfg.max_messages:
            return  # arrived between the stop request and the connection's close: not recorded (exactly max_messages)
        self.messages += 1
        if self._log_frames:
            logger.debug("{} {} recv_ns={} {!r}", kind, symbol, recv_ns, text[:160])
        for w in self._write_fns:
            w(kind, symbol, recv_ns, exch_ms, text, decoded)
        if self.parquet is not None and self.parquet.pending >= self.cfg.max_batch_frames and self._flush_now:
            self._flush_now.set()  # bounded batches: memory stays flat at any rate
            if self._flushing and self.parquet.pending >= 2 * self.cfg.max_batch_frames and self.client is not None:
                # the sinks fall behind the stream: stop reading the socket until the flush in progress
                # is done (TCP flow control holds the sender), so memory stays bounded
                if self.client.pause_reading():
                    self.backpressure_pauses += 1
        if self.cfg.max_messages is not None and self.messages >= self.cfg.max_messages and self._stop is not None:
            if self.stopped_by is None:
                self.stopped_by = "max_messages"
            self._stop.set()

    # -- control ----------------------------------------------------------------------------
    def request_stop(self, reason: str = "stop") -> None:
        """Ask the recorder to stop, flush every sink and return (thread-safe).

        Parameters
        ----------
        reason : str, default "stop"
            Recorded as ``stopped_by`` unless a stop reason is already set.
        """
        if self.stopped_by is None:
            self.stopped_by = reason
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop closed between the check and the call: the recorder already stopped
                pass

    def call_in_loop(self, fn: Callable[[], _T], timeout_s: float) -> _T | None:
        """Return ``fn()`` computed in the recorder's event loop, where the live books change (thread-safe).

        Parameters
        ----------
        fn : callable
            Reads the books (``recorder.client.books``); it runs between two frames, never during one.
        timeout_s : float
            Longest wait for the loop to run it, seconds.

        Returns
        -------
        The value of ``fn()``; None when the recorder's loop is not running.

        Raises
        ------
        TimeoutError
            If the loop did not run ``fn`` within ``timeout_s``; whatever ``fn`` raised.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return None

        async def call() -> _T:
            return fn()

        try:
            future = asyncio.run_coroutine_threadsafe(call(), loop)
        except RuntimeError:  # the loop closed after the check: the recorder stopped
            return None
        return future.result(timeout=timeout_s)

    def run(self) -> None:
        """Record in this thread until stopped (``asyncio.run`` of :meth:`arun`)."""
        asyncio.run(self.arun())

    def run_in_thread(self, poll_s: float = 0.2) -> None:
        """Record in a background thread; the calling thread waits and turns KeyboardInterrupt into a stop.

        Works in a Jupyter kernel (whose thread has a running event loop). A KeyboardInterrupt
        (SIGINT, or SIGTERM under :func:`quantnb.runs.start_run`) stops the recorder, which
        flushes every sink before this returns; the interrupt is then raised again.

        Parameters
        ----------
        poll_s : float, default 0.2
            How often the calling thread checks whether the recorder finished, seconds.
        """
        finished = threading.Event()

        def target() -> None:
            try:
                self.run()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                self._error = exc
            finally:
                finished.set()

        self._thread = threading.Thread(target=target, name="quantnb-recorder", daemon=True)
        self._thread.start()
        interrupted: BaseException | None = None
        while not finished.is_set():  # not Thread.join: an interrupted join can leave is_alive() wrong (3.11)
            try:
                finished.wait(poll_s)
            except KeyboardInterrupt as exc:
                if interrupted is None:
                    logger.warning("Interrupt received: stopping the recorder and flushing every sink")
                interrupted = exc
                self.request_stop("stop")
        if self._error is not None:
            raise self._error
        if interrupted is not None:
            raise interrupted

    async def arun(self) -> None:
        """Connect, record and flush until a stop condition; flush and close every sink at the end."""
        locks = [FolderLock(d) for d in dict.fromkeys(x for x in (self.cfg.raw_dir, self.cfg.parquet_dir) if x)]
        held: list[FolderLock] = []
        try:
            for lock in locks:
                lock.acquire()
                held.append(lock)
            await self._arun()
        finally:
            for lock in held:
                lock.release()

    def _open_sinks(self) -> None:
        cfg = self.cfg
        self.raw = RawSink(cfg.raw_dir, cfg.venue, cfg.depth) if cfg.raw_dir is not None else None
        self.parquet = (ParquetSink(cfg.parquet_dir, cfg.venue, cfg.market, cfg.shard_prefix)
                        if cfg.parquet_dir is not None else None)
        self._write_fns = [s.write for s in (self.raw, self.parquet) if s is not None]

    async def _open_clickhouse(self) -> None:
        """Open the ClickHouse sink; if it cannot open, say why and record to raw/Parquet without it."""
        cfg = self.cfg
        try:
            self.clickhouse = ClickHouseSink(cfg.clickhouse_url, cfg.clickhouse_path or Path(CLICKHOUSE_PATH),
                                             cfg.clickhouse_table)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - any driver error: the other sinks record on
            self.clickhouse = None
            self.clickhouse_error = f"{type(exc).__name__}: {exc}"
            self.sink_errors.append(f"clickhouse: {exc}")
            logger.error("ClickHouse sink unavailable ({}); raw and Parquet keep recording, and a later run inserts "
                         "the shards (backfill)", exc)
            return
        if cfg.parquet_dir is not None:  # shards an earlier (killed) recorder wrote but did not insert
            await asyncio.to_thread(self.clickhouse.backfill, cfg.parquet_dir)

    def _raw_only(self, kind: str, symbol: str, recv_ns: int, exch_ms: int, text: bytes) -> None:
        if self.raw is not None:
            self.raw.write(kind, symbol, recv_ns, exch_ms, text)

    async def _arun(self) -> None:
        cfg = self.cfg
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._flush_now = asyncio.Event()
        if self.stopped_by is not None:
            self._stop.set()
        self._open_sinks()
        if cfg.clickhouse:
            await self._open_clickhouse()
        self.client = self._make_client()
        client_task = asyncio.create_task(self.client.run(), name="client")
        flusher = asyncio.create_task(self._flush_loop(), name="flush")
        reporter = asyncio.create_task(self._progress_loop(), name="progress")
        self._t0 = time.monotonic()
        self._last_report = (self._t0, 0)
        self.started.set()
        waiters = [asyncio.create_task(self._stop.wait())]
        try:
            timeout = cfg.duration_s
            done, _ = await asyncio.wait([*waiters, client_task], timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done and self.stopped_by is None:
                self.stopped_by = "duration"
            if client_task in done and client_task.exception() is not None:
                self.stopped_by = "error"
                raise client_task.exception()  # type: ignore[misc]
        finally:
            self._stop.set()  # the flusher finishes a flush in progress and returns
            for t in (client_task, reporter, *waiters):
                await _cancel(t)
            with contextlib.suppress(Exception):
                await flusher
            try:
                await self.flush()
            except Exception as exc:  # noqa: BLE001 - counted; the stage marks the run failed
                self._flush_failed(exc, final=True)
            self._report(final=True)
            if self.clickhouse is not None:
                self.clickhouse.close()

    def _make_client(self) -> BybitClient | BinanceClient:
        cfg = self.cfg
        kw = dict(backoff_base_s=cfg.backoff_base_s, stale_after_s=cfg.stale_after_s,
                  book_stale_after_s=cfg.book_stale_after_s, on_bad_frame=self.quarantine.add,
                  on_raw_only=self._raw_only)
        if cfg.venue == "bybit":
            url = cfg.ws_url or BYBIT_URLS[cfg.market]
            return BybitClient(list(cfg.symbols), self.on_frame, self.counters, url=url, depth=cfg.depth,
                               channels=cfg.channels, ping_every_s=cfg.ping_every_s, market=cfg.market, **kw)
        return BinanceClient(list(cfg.symbols), self.on_frame, self.counters, ws_url=cfg.ws_url or BINANCE_WS_URL,
                             rest_url=cfg.rest_url or BINANCE_REST_URL, channels=cfg.channels,
                             snapshot_limit=next((n for n in _BINANCE_LIMITS if n >= cfg.depth), 1000),
                             depth_speed=cfg.binance_depth_speed, market=cfg.market,
                             snapshot_timeout_s=cfg.snapshot_timeout_s, **kw)

    # -- flush and progress -------------------------------------------------------------------
    async def _flush_loop(self) -> None:
        """Flush every ``flush_every_s`` until the stop event; a flush in progress always completes."""
        assert self._stop is not None and self._flush_now is not None
        stop, now = self._stop, self._flush_now
        while not stop.is_set():
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(now.wait())]
            await asyncio.wait(waits, timeout=self.cfg.flush_every_s, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            now.clear()
            if stop.is_set():
                return
            try:
                await self.flush()
            except Exception as exc:  # noqa: BLE001 - a sink error must not stop recording; the next flush retries
                self._flush_failed(exc)
            else:
                if self._failing:
                    logger.warning("Flush succeeded after {} failed one(s): every kept frame is written", self._failing)
                self._failing = 0

    def _flush_failed(self, exc: BaseException, final: bool = False) -> None:
        """Count a failed flush; at the final flush, the frames still buffered are lost (counted)."""
        self.sink_errors.append(f"{type(exc).__name__}: {exc}"[:500])
        self._failing += 1
        if not final:
            if self._failing % 12 == 1:  # the first failure, then about once a minute (no log wall on a full disk)
                logger.error("Flush failed ({}: {}); the frames are kept for the next flush ({} failure(s) in a row)",
                             type(exc).__name__, exc, self._failing)
            return
        raw_left = self.raw.pending if self.raw is not None else 0
        self.unflushed_frames = max(raw_left, self.parquet.pending if self.parquet is not None else 0)
        logger.error("Final flush failed ({}: {}); {} frame(s) could not be written", type(exc).__name__, exc,
                     self.unflushed_frames)

    async def flush(self) -> None:
        """Append raw lines, write a Parquet shard and insert it into ClickHouse (a raw failure is raised last)."""
        raw_exc: OSError | None = None
        if self.raw is not None:
            try:
                self.raw.flush()
            except OSError as exc:
                raw_exc = exc
        if self.parquet is None or not self.parquet.pending:
            if raw_exc is not None:
                raise raw_exc
            return
        batch = self.parquet.detach()  # in the recording thread: the frames buffered until now
        assert batch is not None  # pending was checked above
        self._flushing = True
        try:
            try:
                path, rows, frames = await asyncio.to_thread(self.parquet.write_batch, batch)
            except Exception:
                self.parquet.restore(batch)
                raise
            in_ch = None
            if self.clickhouse is not None:
                in_ch = await asyncio.to_thread(self.clickhouse.insert_shard, path, rows)
        finally:
            self._flushing = False
            if self.client is not None:
                self.client.resume_reading()
        logger.debug("Shard {}: {} events from {} frames{}", path.name, rows, frames,
                     "" if in_ch is None else f", ClickHouse {'ok' if in_ch else 'FAILED (backfill later)'}")
        if self.on_shard is not None:
            self.on_shard(path, rows, frames, in_ch)
        if raw_exc is not None:
            raise raw_exc

    async def _progress_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.progress_every_s)
            self._report()

    def sink_bytes(self) -> dict[str, int]:
        """Bytes written so far per sink."""
        out = {}
        if self.raw is not None:
            out["raw"] = self.raw.bytes
        if self.parquet is not None:
            out["parquet"] = self.parquet.bytes
        if self.clickhouse is not None:
            out["clickhouse"] = self.clickhouse.bytes
        return out

    def report(self) -> dict[str, Any]:
        """Counters per symbol, totals, messages/s over the run, bytes per sink (JSON-ready).

        ``messages`` is the frames recorded (exactly ``max_messages`` when that stopped the run);
        ``received`` also counts the frames that arrived after the stop and were not recorded.
        """
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        out: dict[str, Any] = {"elapsed_s": round(elapsed, 3), "sink_bytes": self.sink_bytes(),
                               "per_symbol": self.counters.to_dict()}
        for f in Counters.FIELDS:
            out[f] = self.counters.total(f)
        out["received"] = out["messages"]  # the clients' count, frames after the stop included
        out["messages"] = self.messages
        out["msgs_per_s"] = round(self.messages / elapsed, 1)
        if self.parquet is not None:
            out["shards"] = self.parquet.n
            out["parquet_rows"] = self.parquet.rows
        if self.clickhouse is not None:
            out["clickhouse_shards"] = self.clickhouse.inserted
            out["clickhouse_rows"] = self.clickhouse.rows
            out["clickhouse_backlog"] = list(self.clickhouse.backlog)
        if self.client is not None:
            out["connections"] = self.client.connections
            out["bad_frames"] = self.client.bad_frames  # those of no known symbol included
            out["stalls"] = self.client.stalls
        if self.quarantine.n and self.quarantine.path is not None:
            out["quarantine_file"] = str(self.quarantine.path)
        out["sink_errors"] = list(self.sink_errors[-20:])
        out["flush_failures"] = len(self.sink_errors)
        out["unflushed_frames"] = self.unflushed_frames
        if self.clickhouse_error is not None:
            out["clickhouse_error"] = self.clickhouse_error
        out["backpressure_pauses"] = self.backpressure_pauses
        return out

    def _report(self, final: bool = False) -> None:
        now = time.monotonic()
        t_prev, n_prev = self._last_report
        rate = (self.messages - n_prev) / max(now - t_prev, 1e-9)
        self._last_report = (now, self.messages)
        rep = self.report()
        sinks = ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in rep["sink_bytes"].items()) or "none"
        head = "Final counters" if final else "Progress"
        logger.info("{}: {} messages ({:.0f} msgs/s lately, {:.0f} overall); sinks: {}", head, self.messages, rate,
                    rep["msgs_per_s"], sinks)
        for sym, c in rep["per_symbol"].items():
            logger.info("  {}: snapshots={} deltas={} trades={} bbo={} gaps={} resyncs={} reconnects={} messages={}",
                        sym, c["snapshots"], c["deltas"], c["trades"], c["bbo"], c["gaps"], c["resyncs"],
                        c["reconnects"], c["messages"])
        if self.on_progress is not None:
            self.on_progress(rep)


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it ends; cancel again while it runs on."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.5)
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" at exit
