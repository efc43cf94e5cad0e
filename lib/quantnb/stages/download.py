"""Download stage: a venue's public archive files for symbols and a date range, verified and resumable.

Files land under ``output_dir`` in the archive's own folder layout (Binance
``data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-08-08.zip``, Bybit
``trading/BTCUSDT/BTCUSDT2024-08-08.csv.gz``, ``orderbook/linear/BTCUSDT/...``), so
``quantnb run etl`` with ``input_globs: [<output_dir>/**/*.zip, ...]`` reads venue, market
and symbol from the path. Whole finished months come as monthly files, the other days as
daily files (:func:`quantnb.data._archive.plan_files`).

Each file is one item of the run (its path under ``output_dir``): a Binance zip counts as
downloaded only once it matches its published SHA-256 ``.CHECKSUM`` (a Bybit zip or gzip:
its own CRCs); a mismatch is an ERROR, the file is quarantined under
``runs/<run_id>/quarantine/`` and listed in run.json (``corrupt``); a 404 is a WARNING,
listed (``missing``), and the run goes on. Transfers stream into a hidden part file renamed
atomically, so a run killed at any instant and resumed skips the verified files and
continues a part file with an HTTP Range request.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import re
import threading
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

import polars as pl
from loguru import logger
from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from quantnb.config import OutputDir, StageParams, resolve_output_dir
from quantnb.display import HtmlResult
from quantnb.runs import RunContext, start_run

__all__ = ["DownloadParams", "DownloadResult", "run_download"]

_SYMBOL = re.compile(r"^[A-Za-z0-9]{2,30}$")
_INTERVAL = re.compile(r"^(1s|1m|3m|5m|15m|30m|1h|2h|4h|6h|8h|12h|1d|3d|1w|1mo)$")


class DownloadParams(StageParams):
    """Parameters of the download stage.

    How many transfers run at once, their timeouts and retries are not part of the config
    hash: a resumed download may change them.
    """

    stage = "download"
    execution_fields: ClassVar[frozenset[str]] = StageParams.execution_fields | frozenset(
        {"max_concurrency", "timeout_s", "retry_attempts", "retry_wait_max_s"})
    venue: Literal["binance", "bybit"] = Field("binance", description="Archive: binance (data.binance.vision) or "
                                                                      "bybit (public.bybit.com).")
    market: str = Field("usdm", description="binance: spot | usdm | coinm; bybit: linear | inverse | spot.")
    data_type: str = Field("klines", description="binance: klines, aggTrades, trades, bookTicker, bookDepth, "
                                                 "fundingRate, metrics; bybit: orderbook, trades.")
    interval: str = Field("1m", description="Kline interval (klines only): 1s, 1m, 5m, 1h, 1d ...")
    symbols: list[str] = Field(default_factory=lambda: ["BTCUSDT"], min_length=1, description="Exchange symbols.")
    start: dt.date = Field(dt.date(2024, 7, 1), description="First UTC day, inclusive (YYYY-MM-DD).")
    end: dt.date = Field(dt.date(2024, 9, 30), description="Last UTC day, inclusive (YYYY-MM-DD).")
    base_url: str | None = Field(None, description="Archive root URL; None: the venue's public archive. Set it "
                                                   "for a mirror or a loopback server.")
    output_dir: OutputDir = Field("data/raw", description="Where the archive's folder layout is reproduced: any "
                                                        "absolute folder, or one relative to the project.")
    book_depth: PositiveInt | None = Field(None, description="Bybit order-book depth in the file name; None: 500 "
                                                             "(linear, inverse), 200 (spot).")
    max_concurrency: PositiveInt = Field(8, le=64, description="Files transferred at once.")
    timeout_s: PositiveFloat = Field(60.0, description="Connect and per-read timeout of each request, seconds.")
    retry_attempts: PositiveInt = Field(6, description="Attempts per request (429/503/5xx, dropped connections).")
    retry_wait_max_s: PositiveFloat = Field(30.0, description="Longest computed wait between attempts, seconds "
                                                              "(a Retry-After up to 120 s is honoured).")

    @model_validator(mode="after")
    def _check(self) -> DownloadParams:
        from quantnb.data import BINANCE_TYPES, BYBIT_TYPES

        table = BINANCE_TYPES if self.venue == "binance" else BYBIT_TYPES
        if self.market not in table:
            raise ValueError(f"market={self.market!r}: {self.venue} markets are {', '.join(table)}")
        if self.data_type not in table[self.market]:
            raise ValueError(f"data_type={self.data_type!r}: the {self.venue} {self.market} archive has "
                             f"{', '.join(table[self.market])}")
        if self.start > self.end:
            raise ValueError(f"start={self.start} is after end={self.end}; give start <= end (inclusive UTC days)")
        bad = [s for s in self.symbols if not _SYMBOL.match(s)]
        if bad:
            raise ValueError(f"symbols {bad}: an exchange symbol is 2 to 30 letters or digits (e.g. BTCUSDT)")
        if self.data_type == "klines" and not _INTERVAL.match(self.interval):
            raise ValueError(f"interval={self.interval!r}: Binance kline intervals are 1s, 1m, 3m, 5m, 15m, 30m, "
                             "1h, 2h, 4h, 6h, 8h, 12h, 1d, 3d, 1w, 1mo")
        if self.base_url is not None and not re.match(r"^https?://[^\s/]+", self.base_url):
            raise ValueError(f"base_url={self.base_url!r}: give an http(s):// root URL (or None for the venue's)")
        return self

    def run_suffix(self) -> str:
        """Return e.g. ``binance-usdm-klines-BTCUSDT-20240701-20240930`` (``[A-Za-z0-9_.-]`` only)."""
        syms = "-".join(s.upper() for s in self.symbols[:2]) + ("-etc" if len(self.symbols) > 2 else "")
        return f"{self.venue}-{self.market}-{self.data_type}-{syms}-{self.start:%Y%m%d}-{self.end:%Y%m%d}"[:64]


@dataclasses.dataclass
class DownloadResult(HtmlResult):
    """What a download run fetched (status ``completed_with_errors`` when a file is corrupt or failed)."""

    run_id: str
    status: str
    # per planned file: path (under output_dir), status (downloaded, skipped, missing, corrupt, failed,
    # not_done), bytes, reason
    files: pl.DataFrame
    output_dir: Path  # where the archive layout was reproduced
    bytes_total: int  # received by this attempt
    elapsed_s: float  # wall time of the transfers
    quarantine_dir: Path | None = None  # where corrupt files were moved: runs/<run_id>/quarantine

    def _of(self, status: str) -> list[str]:
        return self.files.filter(pl.col("status") == status)["path"].to_list()

    @property
    def missing(self) -> list[str]:
        """Files the archive answered 404 for."""
        return self._of("missing")

    @property
    def corrupt(self) -> list[str]:
        """Files that failed their checksum (quarantined)."""
        return self._of("corrupt")

    def summary(self) -> pl.DataFrame:
        """Print counts, where the files are and what to run next; return the per-file table."""
        counts = dict(self.files.group_by("status").len().iter_rows())
        rate = self.bytes_total / 1e6 / max(self.elapsed_s, 1e-9)
        print(f"Download run {self.run_id}: {self.status}; " + ", ".join(f"{n} {s}" for s, n in sorted(
            counts.items())) + f"; {self.bytes_total / 1e6:.1f} MB in {self.elapsed_s:.1f} s ({rate:.1f} MB/s)")
        print(f"files: {self.output_dir}")
        for path in self.missing:
            print(f"  MISSING (404, not published) {path}")
        for row in self.files.filter(pl.col("status").is_in(["corrupt", "failed"])).iter_rows(named=True):
            print(f"  {row['status'].upper()} {row['path']}: {row['reason'].splitlines()[0][:160]}")
        return self.files


class _Progress:
    """Bytes and files counters shared by the transfer tasks, reported on the run's heartbeat."""

    def __init__(self, ctx: RunContext, total_files: int) -> None:
        self.ctx, self.total_files = ctx, total_files
        self.bytes = 0
        self.files = 0
        self.t0 = time.monotonic()
        self.lock = threading.Lock()

    def add_bytes(self, n: int) -> None:
        with self.lock:
            self.bytes += n

    def bytes_line(self) -> str:
        """``0.4 MB · 0.21 MB/s``: what the files-based progress line does not say."""
        rate = self.bytes / max(time.monotonic() - self.t0, 1e-9)
        return f"{self.bytes / 1e6:.1f} MB · {rate / 1e6:.2f} MB/s"

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        rate = self.bytes / elapsed
        eta = (self.total_files - self.files) * elapsed / self.files if 0 < self.files < self.total_files else None
        eta_txt = f" · ETA {eta:.0f} s" if eta is not None else ""
        return (f"{self.files}/{self.total_files} files · {self.bytes / 1e6:.1f} MB · {rate / 1e6:.2f} MB/s"
                f"{eta_txt}")


async def _run_all(ctx: RunContext, params: DownloadParams, todo: list[Any], out_dir: Path,
                   progress: _Progress, stop: threading.Event) -> list[Any]:
    """Fetch every file of ``todo`` (at most ``max_concurrency`` at once); commit each as it ends."""
    from quantnb.data import default_base_url
    from quantnb.retry import RetryPolicy
    from quantnb.stages._fetch import Fetcher

    policy = RetryPolicy(attempts=params.retry_attempts, timeout_s=None, wait_initial_s=0.5,
                         wait_max_s=params.retry_wait_max_s, max_retry_after_s=120.0, what="download/retry")
    base = params.base_url or default_base_url(params.venue, params.data_type)
    sem = asyncio.Semaphore(params.max_concurrency)
    outcomes = []

    async with Fetcher(base, out_dir, ctx.run_dir / "quarantine", policy, params.max_concurrency, params.timeout_s,
                       progress.add_bytes) as fetcher:
        async def one(file: Any) -> Any:
            async with sem:
                return await fetcher.fetch(file, trusted=ctx.checkpoint.is_completed(file.path))

        async def beat() -> None:
            while True:
                await asyncio.sleep(2.0)
                ctx.beat(progress.line())

        beater = asyncio.create_task(beat())
        tasks = [asyncio.create_task(one(f)) for f in todo]
        try:
            for n, fut in enumerate(asyncio.as_completed(tasks)):
                if stop.is_set():
                    raise KeyboardInterrupt("download stopped")
                outcome = await fut
                await asyncio.to_thread(_commit, ctx, outcome, n, progress)  # one writer; the loop goes on
                outcomes.append(outcome)
        finally:
            beater.cancel()
            for t in tasks:
                t.cancel()
            await asyncio.gather(beater, *tasks, return_exceptions=True)
    return outcomes


def _commit(ctx: RunContext, outcome: Any, n: int, progress: _Progress) -> None:
    """Record one file's outcome in the checkpoint (verified files are what a resume skips) and the progress."""
    if outcome.status in ("downloaded", "skipped"):
        if outcome.item in ctx.checkpoint.extra.get("missing", []):  # published since an earlier attempt
            ctx.checkpoint.extra["missing"].remove(outcome.item)
        ctx.checkpoint.mark_completed(outcome.item)
    elif outcome.status in ("corrupt", "failed"):
        ctx.checkpoint.mark_failed(outcome.item, f"{outcome.status}: {outcome.reason}")
    else:  # missing: not a failure of the run; a later run asks again (the venue may publish it)
        missing = ctx.checkpoint.extra.setdefault("missing", [])
        if outcome.item not in missing:
            missing.append(outcome.item)
        ctx.checkpoint.save()
    progress.files += 1
    ctx.item_done(f"{progress.bytes_line()} · {outcome.item.rsplit('/', 1)[-1]} {outcome.status}", events=outcome.bytes,
                  batch_num=n)


def _run_loop(ctx: RunContext, params: DownloadParams, todo: list[Any], out_dir: Path,
              progress: _Progress) -> list[Any]:
    """Run the transfers in an event loop of their own thread (a notebook's kernel already runs a loop)."""
    stop = threading.Event()
    box: dict[str, Any] = {}
    loop = asyncio.new_event_loop()

    def main() -> None:
        try:
            box["result"] = loop.run_until_complete(_run_all(ctx, params, todo, out_dir, progress, stop))
        except BaseException as exc:  # handed to the calling thread, which re-raises it
            box["error"] = exc
        finally:
            loop.close()

    thread = threading.Thread(target=main, name="download-loop", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)
    except KeyboardInterrupt:
        stop.set()
        if not loop.is_closed():  # cancel every transfer from inside the loop (all_tasks is not thread-safe)
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
        thread.join(30)
        raise
    if "error" in box:
        raise box["error"]
    return box["result"]


def run_download(params: DownloadParams) -> DownloadResult:
    """Download the archive files covering ``params.start`` to ``params.end`` for every symbol.

    Parameters
    ----------
    params : DownloadParams
        Validated parameters.

    Returns
    -------
    DownloadResult
        Per-file outcomes (downloaded, skipped, missing, corrupt, failed) and the totals.

    Raises
    ------
    ConfigError
        Invalid parameters (raised when they are built).
    KeyboardInterrupt
        On SIGINT/SIGTERM; the run is recorded ``interrupted``: resume it (verified files
        are skipped, part files continued).

    Examples
    --------
    Three days of Binance USD-M one-minute klines into ``data/raw/``, in the archive's own layout
    (``base_url`` left unset is data.binance.vision; here a loopback copy serves them):

    >>> from quantnb.stages.download import DownloadParams, run_download
    >>> params = DownloadParams(symbols=["BTCUSDT"], start="2022-01-01", end="2022-01-03",
    ...                         base_url=base_url, project_dir=project, console_level=None)
    >>> result = run_download(params)
    >>> result.status, result.files["status"].to_list()
    ('completed', ['downloaded', 'downloaded', 'downloaded'])
    >>> run_download(params.model_copy(update={"resume": True})).files["status"].to_list()
    ['skipped', 'skipped', 'skipped']
    """
    from quantnb.data import plan_files

    with start_run(params) as ctx:
        out_dir = resolve_output_dir(params.output_dir, ctx.root)
        files = plan_files(params.venue, params.market, params.data_type, params.symbols, params.start, params.end,
                           interval=params.interval, book_depth=params.book_depth)
        ctx.add_output("download_dir", out_dir)
        ctx.set_total(len(files))
        done_before = sum(ctx.checkpoint.is_completed(f.path) for f in files)
        logger.info("{} file(s) cover {} {} {} {} from {} to {}{}", len(files), params.venue, params.market,
                    params.data_type, ",".join(params.symbols), params.start, params.end,
                    f"; {done_before} verified by an earlier attempt" if done_before else "")
        progress = _Progress(ctx, len(files))
        t0 = time.perf_counter()
        outcomes = _run_loop(ctx, params, files, out_dir, progress)
        elapsed = time.perf_counter() - t0
        by_item = {o.item: o for o in outcomes}
        rows = [{"path": f.path, "status": by_item[f.path].status if f.path in by_item else "not_done",
                 "bytes": by_item[f.path].bytes if f.path in by_item else 0,
                 "reason": by_item[f.path].reason if f.path in by_item else ""} for f in files]
        table = pl.DataFrame(rows, schema={"path": pl.String, "status": pl.String, "bytes": pl.Int64,
                                           "reason": pl.String})
        counts = {s: int((table["status"] == s).sum()) for s in ("downloaded", "skipped", "missing", "corrupt",
                                                                 "failed")}
        ctx.set_result(downloaded=counts["downloaded"], skipped=counts["skipped"], bytes=progress.bytes,
                       elapsed_s=round(elapsed, 3), missing=[r["path"] for r in rows if r["status"] == "missing"],
                       corrupt={r["path"]: r["reason"] for r in rows if r["status"] == "corrupt"},
                       failed={r["path"]: r["reason"] for r in rows if r["status"] == "failed"})
        ctx.record_metrics(files=counts["downloaded"] + counts["skipped"], missing=counts["missing"],
                           corrupt=counts["corrupt"], failed=counts["failed"], mb=round(progress.bytes / 1e6, 3),
                           files_per_s=round(counts["downloaded"] / max(elapsed, 1e-9), 2))
        logger.info("download/files_per_s={:.2f} download/mb_per_s={:.2f}: {}", counts["downloaded"] /
                    max(elapsed, 1e-9), progress.bytes / 1e6 / max(elapsed, 1e-9), progress.line())
    return DownloadResult(ctx.run_id, ctx.status, table, out_dir, progress.bytes, elapsed, ctx.run_dir / "quarantine")
