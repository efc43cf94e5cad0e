"""ETL stage: raw exchange files to validated 1-minute bars with order-book features, as Parquet.

Each input file is one item, identified by its path (relative to the project, or absolute
outside it): ingested in a worker process by :func:`_ingest_to_shard` into a partial-bars shard
(``runs/<run_id>/parts/<name>-<hash of the path>.parquet``, written atomically) and
committed to the checkpoint by :func:`_collect`; a corrupt file, or a path that is not a
readable regular file, is quarantined (listed in the checkpoint and run.json) and the others
go on. When every file is done, the shards are merged per instrument (venue, market, symbol)
and UTC day into ``<output_dir>/<venue>/<market>/<SYMBOL>/<YYYY-MM-DD>.parquet``, e.g.
``data/processed/bybit/linear/BTCUSDT/2026-08-09.parquet``. Shards and outputs are written
atomically and the merge is deterministic, so a run killed at any instant and resumed
writes the same Parquet as one never interrupted. Items run through
:func:`quantnb.parallel.open_executor`; a killed worker fails the run with an ``ExecutorError``
naming its file; the files not finished stay not done, so a resume processes them.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from pathlib import Path
from typing import Any, Literal

import polars as pl
from loguru import logger
from pydantic import Field, field_validator

from quantnb.config import OutputDir, resolve_output_dir
from quantnb.display import HtmlResult
from quantnb.errors import ConfigError, DataError
from quantnb.parallel import ExecutorError, ParallelStageParams, open_executor
from quantnb.runs import (
    RunContext,
    atomic_path,
    atomic_write_json,
    is_interrupt,
    read_json_tolerant,
    start_run,
)

__all__ = ["EtlParams", "EtlResult", "run_etl"]

# Version of the item identity in checkpoints and shard names: 2 = path-based (1 = file name).
ITEM_FORMAT = 2

DEFAULT_GLOBS = [
    "data/samples/bybit/*.data*",
    "data/samples/binance_usdm/*.gz",
    "data/samples/trades/*.csv",
    "data/samples/ohlcv/*.csv",
]


class EtlParams(ParallelStageParams):  # + n_workers, executor, scheduler
    """Parameters of the ETL stage."""

    stage = "etl"
    input_globs: list[str] = Field(
        default_factory=lambda: list(DEFAULT_GLOBS),
        description="Paths or glob patterns of raw files, relative to the project directory or absolute; "
                    "'**' matches any number of folders. Whatever they name that is not a readable regular "
                    "file is quarantined with an error.",
    )
    output_dir: OutputDir = Field("data/processed",
                                  description="Where <venue>/<market>/<SYMBOL>/<YYYY-MM-DD>.parquet go: an absolute "
                                              "folder, or one relative to the project.")
    skip_until_snapshot: bool = Field(
        False, description="Skip order-book deltas before the first snapshot instead of failing the file."
    )
    on_crossed: Literal["raise", "skip"] = Field(
        "raise", description="A book that crosses (best bid > best ask) after an update: 'raise' quarantines "
                             "the file; 'skip' counts the crossed states and leaves them out of the features."
    )
    bybit_market: str = Field(
        "linear", description="Market of Bybit files whose folders name none (Bybit's archive layout has "
                              "linear/, inverse/, spot/, option/ folders; those win)."
    )
    binance_market: str = Field(
        "usdm", description="Market of Binance trades CSVs whose folders name none (futures/um/ -> usdm, "
                            "futures/cm/ -> coinm, spot/ -> spot win). A capture's depth events decide first: "
                            "with 'pu' usdm, without spot."
    )
    ohlcv_venue: str = Field("unknown", description="Venue of 1-minute OHLCV CSV files (their name tells none).")
    ohlcv_market: str = Field("perp", description="Market of 1-minute OHLCV CSV files.")

    @field_validator("bybit_market", "binance_market", "ohlcv_venue", "ohlcv_market")
    @classmethod
    def _folder_name(cls, value: str) -> str:
        from quantnb.data import MARKET_RE

        if not MARKET_RE.match(value):
            raise ValueError(f"{value!r} must be lower-case letters, digits, '_' or '-' (it names an output folder)")
        return value

    def run_suffix(self) -> str:
        """Return the input folders' names, e.g. ``bybit-binance_usdm-trades-ohlcv`` (``[A-Za-z0-9_.-]`` only)."""
        from quantnb.data import safe_token

        names = []
        for pattern in self.input_globs:
            folders = [p for p in Path(pattern).parent.parts if p not in ("/", ".", "..") and not _is_glob(p)]
            name = safe_token(folders[-1], 24) if folders else "root"
            if name not in names:
                names.append(name)
        return safe_token("-".join(names), 48)

    def default_markets(self) -> dict[str, str]:
        """Source kind to the market of files whose folders name none."""
        from quantnb.data import markets_by_kind

        return markets_by_kind(self.binance_market, self.bybit_market, self.ohlcv_market)


def _is_glob(part: str) -> bool:
    return any(c in part for c in "*?[")


@dataclasses.dataclass
class EtlResult(HtmlResult):
    """What an ETL run produced (inputs are named by their path relative to the project, or absolute)."""

    run_id: str
    status: str
    outputs: pl.DataFrame  # per Parquet written: venue, market, symbol, day, rows, gaps, path, size_kb
    quarantined: dict[str, str]  # input to the reason it was quarantined
    quality: dict[str, dict[str, Any]]  # input to its quality report
    empty_inputs: list[str] = dataclasses.field(default_factory=list)  # inputs without a data row (WARNING)
    # per input whose book data another input of the instrument gave instead (quantnb.data.book_conflicts)
    conflicts: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def summary(self) -> pl.DataFrame:
        """Print the status and quarantined files; return the outputs table (shown in a notebook)."""
        print(f"ETL run {self.run_id}: {self.status}, {self.outputs.height} Parquet file(s)")
        for path, reason in self.quarantined.items():
            print(f"  QUARANTINED {path}: {reason}")
        for path in self.empty_inputs:
            print(f"  NO DATA ROWS {path}")
        for c in self.conflicts:
            print(f"  CONFLICT {c['file']}: {c['minutes']} minute(s) of {c['instrument']} taken from {c['used']}")
        return self.outputs


def _find_inputs(params: EtlParams, root: Path) -> tuple[list[Path], dict[str, str]]:
    """Expand ``input_globs``; return the readable regular files and, per other path, why it is not one."""
    from quantnb.data import check_regular_file, expand_glob, item_key, traversed_folder

    files: dict[str, Path] = {}
    bad: dict[str, str] = {}
    for pattern in params.input_globs:
        matches = expand_glob(root, pattern)
        if not matches:
            logger.warning("Input pattern {!r} matched no file under {}", pattern, root)
        for m in matches:
            if traversed_folder(pattern, m):  # "data/raw/**/*": its files are matched too
                logger.debug("{}: a folder walked by the recursive pattern {!r}", m, pattern)
                continue
            key = item_key(m, root)
            problem = check_regular_file(m)
            if problem is None:
                files[key] = m
            else:
                bad[key] = f"{problem} (matched by input_globs pattern {pattern!r})"
    if not files and not bad:
        raise ConfigError(f"input_globs={params.input_globs}: no input file found under {root}")
    return [files[k] for k in sorted(files)], bad


def _ingest_to_shard(path: str, shard: str, options: dict[str, Any]) -> dict[str, Any]:
    """Worker: ingest one raw file into a partial-bars shard (atomically); return its summary."""
    from quantnb.data import ingest_file

    t0 = time.perf_counter()
    result = ingest_file(Path(path), **options)
    with atomic_path(shard) as tmp:
        result.bars.write_parquet(tmp, compression="zstd")
    if result.funding is not None:  # a funding-rate file: its series, merged per instrument by _write_funding
        with atomic_path(_funding_shard(Path(shard))) as tmp:
            result.funding.write_parquet(tmp, compression="zstd")
    return {
        "n_messages": int(result.n_messages),
        "rows": result.bars.height,
        "quality": result.quality.to_dict(),
        "elapsed_s": time.perf_counter() - t0,
    }


def _funding_shard(shard: Path) -> Path:
    return shard.with_suffix(".funding.parquet")


def _write_funding(ctx: RunContext, used: list[Path], out_dir: Path) -> int:
    """Merge the funding series of every funding-rate input into ``<instrument>/funding/funding.parquet``."""
    from quantnb.data import instrument_path

    frames = [_read_parquet(_funding_shard(s)) for s in used if _funding_shard(s).exists()]
    if not frames:
        return 0
    series = pl.concat(frames).sort("venue", "market", "symbol", "ts", "file").unique(
        ["venue", "market", "symbol", "ts"], keep="first", maintain_order=True)
    for (venue, market, symbol), frame in sorted(series.partition_by(["venue", "market", "symbol"],
                                                                     as_dict=True).items()):
        dest = out_dir / instrument_path(venue, market, symbol) / "funding" / "funding.parquet"
        with atomic_path(dest) as tmp:
            frame.drop("file").write_parquet(tmp, compression="zstd")
        ctx.add_output(f"funding_{venue}_{market}_{symbol}", dest)
        logger.info("Saved {} ({} funding rate(s), {} to {})", dest, frame.height, frame["ts"].min(),
                    frame["ts"].max())
    return series.height


def _item_name(path: Path, root: Path) -> str:
    from quantnb.data import item_key

    return item_key(path, root)


def _shard_path(ctx: RunContext, item: str) -> Path:
    from quantnb.data import shard_stem

    return ctx.run_dir / "parts" / f"{shard_stem(item)}.parquet"


def _check_item_format(ctx: RunContext) -> None:
    """Refuse to resume a checkpoint whose items were named by file name (older quantnb)."""
    fmt = ctx.checkpoint.extra.get("etl_item_format")
    if ctx.checkpoint.completed and fmt != ITEM_FORMAT:
        raise ConfigError(
            f"run {ctx.run_id}: its checkpoint ({ctx.checkpoint.path}) was written by an older quantnb that named "
            "ETL inputs by file name (format 1; this one names them by path, format 2), so its finished files "
            "cannot be matched safely; start a new run (leave resume/run_id unset)")
    if fmt != ITEM_FORMAT:
        ctx.checkpoint.extra["etl_item_format"] = ITEM_FORMAT
        ctx.checkpoint.save()


def _process_files(ctx: RunContext, params: EtlParams, inputs: list[Path]) -> dict[str, dict[str, Any]]:
    """Driver: ingest every not-done input (in workers) and commit each result as it completes."""
    todo = [p for p in inputs if not ctx.checkpoint.is_completed(_item_name(p, ctx.root))]
    skipped = len(inputs) - len(todo)
    if skipped:
        logger.info("Resume: skipping {} file(s) the checkpoint lists as done", skipped)
    reports: dict[str, dict[str, Any]] = {}
    options = {"skip_until_snapshot": params.skip_until_snapshot, "on_crossed": params.on_crossed,
               "default_markets": params.default_markets(),
               "ohlcv_venue": params.ohlcv_venue}
    shards: dict[str, tuple[int, Path]] = {}
    with open_executor(params, ctx) as ex:  # this process alone commits and logs the items
        for n, p in enumerate(todo):
            item = _item_name(p, ctx.root)
            shards[item] = (n, _shard_path(ctx, item))
            ex.submit(item, _ingest_to_shard, str(p), str(shards[item][1]), {**options, "key": item},
                      inputs=(str(p),))
        for done in ex.as_completed():
            n, shard = shards[done.key]
            _collect(ctx, done.key, shard, n, reports, done.result)
    return reports


def _collect(ctx: RunContext, item: str, shard: Path, n: int, reports: dict[str, dict[str, Any]],
                get: Any) -> None:
    """Driver: commit one item's result from ``get()``, or quarantine it (DataError or any error)."""
    # an interrupt or an ExecutorError is re-raised and leaves the item not done
    try:
        summary = get()
    except DataError as exc:
        logger.error("{} quarantined: {}", item, exc)
        ctx.checkpoint.mark_failed(item, str(exc))
        ctx.item_done(item, events=0, batch_num=n)
        return
    except ExecutorError:
        raise
    except Exception as exc:  # one file's bug must not stop the others; reported in full
        if is_interrupt(exc):  # a signal that surfaced through C code: stop, do not quarantine
            raise KeyboardInterrupt(f"interrupted while reading {item}") from exc
        logger.opt(exception=exc).error("{} quarantined after an unexpected error: {}: {}",
                                        item, type(exc).__name__, exc)
        ctx.checkpoint.mark_failed(item, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
        ctx.item_done(item, events=0, batch_num=n)
        return
    reports[item] = summary["quality"]
    atomic_write_json(shard.with_suffix(".quality.json"), summary["quality"])
    ctx.batch_saved(n, 1, summary["n_messages"], shard)
    ctx.checkpoint.mark_completed(item)
    ctx.item_done(item, events=summary["n_messages"], batch_num=n)
    rate = summary["n_messages"] / max(summary["elapsed_s"], 1e-9)
    logger.debug("{}: {} messages -> {} partial bar rows in {:.2f} s (etl/msgs_per_s={:.0f}); shard {} ({:.1f} kB)",
                item, summary["n_messages"], summary["rows"], summary["elapsed_s"], rate,
                shard.name, shard.stat().st_size / 1024)


def _read_parquet(path: Path) -> pl.DataFrame:
    """Read one Parquet file by path, never as a glob (a path may hold ``*``, ``?`` or ``[``)."""
    with open(path, "rb") as fh:
        return pl.read_parquet(fh)


def _merge_and_write(ctx: RunContext, params: EtlParams) -> pl.DataFrame:
    from quantnb.data import book_conflicts, merge_parts

    used = [_shard_path(ctx, item) for item in sorted(ctx.checkpoint.completed)]
    parts = [_read_parquet(p) for p in used]
    ctx.set_result(conflicts=book_conflicts(parts))  # merge_parts logs each at WARNING
    out_dir = resolve_output_dir(params.output_dir, ctx.root)
    for shard, part in zip(used, parts, strict=True):  # each input's quality report next to its outputs
        report = read_json_tolerant(shard.with_suffix(".quality.json"))
        instruments = part.select("venue", "market", "symbol").unique().sort("venue", "market", "symbol")
        for venue, market, symbol in instruments.iter_rows():
            dest = out_dir / venue / market / symbol / f"{shard.name.removesuffix('.parquet')}.quality.json"
            atomic_write_json(dest, report)
    rows: list[dict[str, Any]] = []
    for (instrument, day), frame in sorted(merge_parts(parts).items()):
        dest = out_dir / instrument / f"{day.isoformat()}.parquet"
        with atomic_path(dest) as tmp:
            frame.write_parquet(tmp, compression="zstd")
        gaps = int(frame["gap_before"].sum()) if "gap_before" in frame.columns else 0
        size_kb = dest.stat().st_size / 1024
        logger.debug("Saved {} ({} rows, {} gap(s), {:.1f} kB)", dest, frame.height, gaps, size_kb)
        venue, market, symbol = instrument.split("/", 2)
        rows.append({"venue": venue, "market": market, "symbol": symbol, "day": day.isoformat(),
                     "rows": frame.height, "gaps": gaps,
                     "path": str(dest.relative_to(ctx.root) if dest.is_relative_to(ctx.root) else dest),
                     "size_kb": round(size_kb, 1)})
    ctx.add_output("parquet_dir", out_dir)
    _write_funding(ctx, used, out_dir)
    logger.info("Merged: {} Parquet file(s), {} bars, under {}", len(rows), sum(r["rows"] for r in rows), out_dir)
    schema = {"venue": pl.String, "market": pl.String, "symbol": pl.String, "day": pl.String, "rows": pl.Int64,
              "gaps": pl.Int64, "path": pl.String, "size_kb": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def run_etl(params: EtlParams) -> EtlResult:
    """Run the ETL stage: ingest every input file in parallel, then merge into daily Parquet per instrument.

    Parameters
    ----------
    params : EtlParams
        Validated parameters.

    Returns
    -------
    EtlResult
        Outputs table, quarantined files with reasons, quality reports, inputs without data rows.

    Raises
    ------
    ConfigError
        If no input path matches ``input_globs``, or when resuming a checkpoint written by
        an older quantnb (inputs named by file name).
    ExecutorError
        If a worker process was killed (out of memory, SIGKILL) or a Dask worker cannot see an
        input: the run is ``failed``, nothing is quarantined; resume it.
    KeyboardInterrupt
        On SIGINT/SIGTERM; the run is recorded ``interrupted`` and can be resumed.

    Examples
    --------
    >>> params = EtlParams(input_globs=["data/raw/bybit/*.data.zip"], n_workers=2)
    >>> result = run_etl(params)
    >>> result.outputs.select("symbol", "day", "rows")  # one row per daily Parquet
    """
    with start_run(params) as ctx:
        _check_item_format(ctx)
        inputs, bad = _find_inputs(params, ctx.root)
        logger.info("Found {} input file(s)", len(inputs))
        logger.debug("Inputs: {}", ", ".join(_item_name(p, ctx.root) for p in inputs))
        ctx.set_total(len(inputs) + len(bad), total_batches=len(inputs) + len(bad))
        for item, reason in sorted(bad.items()):
            logger.error("{} quarantined: {}", item, reason)
            ctx.checkpoint.mark_failed(item, reason)
        reports = _process_files(ctx, params, inputs)
        logger.info("Ingested {} file(s), {} quarantined", len(reports), len(ctx.checkpoint.failed))
        for item in ctx.checkpoint.completed:  # files finished by an earlier attempt of a resumed run
            if item not in reports:
                saved = read_json_tolerant(_shard_path(ctx, item).with_suffix(".quality.json"))
                reports[item] = saved if isinstance(saved, dict) else {}
        empty = sorted(item for item, rep in reports.items() if rep.get("no_data_rows"))
        for item in empty:
            logger.warning("{}: no data rows; it produced no bar (see its quality report)", item)
        outputs = _merge_and_write(ctx, params)
        ctx.set_result(parquet_files=outputs.height, quarantined=len(ctx.checkpoint.failed),
                       bars=int(outputs["rows"].sum()) if outputs.height else 0, empty_inputs=empty,
                       instruments=sorted({f"{v}/{m}/{s}" for v, m, s in
                                           outputs.select("venue", "market", "symbol").iter_rows()}))
        ctx.record_metrics(files=len(ctx.checkpoint.completed), quarantined=len(ctx.checkpoint.failed),
                           bars=int(outputs["rows"].sum()) if outputs.height else 0, empty_inputs=len(empty))
    for item, reason in ctx.checkpoint.failed.items():
        logger.warning("Quarantined {}: {}", item, reason.splitlines()[0])
    return EtlResult(ctx.run_id, ctx.status, outputs, dict(ctx.checkpoint.failed), reports, empty,
                     list(ctx.results.get("conflicts", [])))
