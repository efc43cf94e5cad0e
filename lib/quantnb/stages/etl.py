"""ETL stage: raw exchange files to validated 1-minute bars with order-book features, as Parquet.

Each input file is one item: ingested in a worker process into a partial-bars shard
(``runs/<run_id>/parts/<file>.parquet``, written atomically) and committed to the
checkpoint; a corrupt file is quarantined (listed in the checkpoint and run.json) and
the others go on. When every file is done, the shards are merged per symbol and UTC day
into ``<output_dir>/<SYMBOL>/<YYYY-MM-DD>.parquet``. Shards and outputs are written
atomically and the merge is deterministic, so a run killed at any instant and resumed
writes the same Parquet as one never interrupted.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import time
import traceback
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl
from loguru import logger
from pydantic import Field, PositiveInt

from quantnb.errors import ConfigError, DataError
from quantnb.parallel import ParallelStageParams, open_executor
from quantnb.runlog import (
    RunContext,
    atomic_path,
    atomic_write_json,
    is_interrupt,
    read_json_tolerant,
    start_run,
    worker_initializer,
)

__all__ = ["EtlParams", "EtlResult", "run_etl"]

DEFAULT_GLOBS = [
    "data/samples/bybit/*.data*",
    "data/samples/binance_usdm/*.gz",
    "data/samples/trades/*.csv",
    "data/samples/ohlcv/*.csv",
]


class EtlParams(ParallelStageParams):  # + executor, scheduler
    """Parameters of the ETL stage."""

    stage = "etl"
    input_globs: list[str] = Field(
        default_factory=lambda: list(DEFAULT_GLOBS),
        description="Glob patterns of raw files, relative to the project directory.",
    )
    output_dir: str = Field("data/processed", description="Where <SYMBOL>/<YYYY-MM-DD>.parquet go.")
    n_workers: PositiveInt = Field(2, description="Worker processes; 1 runs in-process.")
    skip_until_snapshot: bool = Field(
        False, description="Skip order-book deltas before the first snapshot instead of failing the file."
    )

    def run_suffix(self) -> str:
        """Return the input folders' names, e.g. ``bybit-binance_usdm-trades-ohlcv``."""
        names = []
        for pattern in self.input_globs:
            parent = Path(pattern).parent.name or "root"
            if parent not in names:
                names.append(parent)
        return "-".join(names)[:48] or "none"


@dataclasses.dataclass
class EtlResult:
    """What an ETL run produced.

    Attributes
    ----------
    run_id, status : str
        The run and its final status.
    outputs : polars.DataFrame
        One row per Parquet written: ``symbol, day, rows, gaps, path, size_kb``.
    quarantined : dict of str to str
        Input file to the reason it was quarantined.
    quality : dict of str to dict
        Input file to its quality report.
    """

    run_id: str
    status: str
    outputs: pl.DataFrame
    quarantined: dict[str, str]
    quality: dict[str, dict[str, Any]]

    def summary(self) -> pl.DataFrame:
        """Print the status and quarantined files; return the outputs table (shown in a notebook)."""
        print(f"ETL run {self.run_id}: {self.status}, {self.outputs.height} Parquet file(s)")
        for path, reason in self.quarantined.items():
            print(f"  QUARANTINED {path}: {reason}")
        return self.outputs


def _find_inputs(params: EtlParams, root: Path) -> list[Path]:
    files: dict[str, Path] = {}
    for pattern in params.input_globs:
        matches = sorted(root.glob(pattern)) if not Path(pattern).is_absolute() else sorted(
            Path("/").glob(pattern.lstrip("/"))
        )
        if not matches:
            logger.warning("Input pattern {!r} matched no file under {}", pattern, root)
        for m in matches:
            if m.is_file():
                files[str(m)] = m
    if not files:
        raise ConfigError(f"input_globs={params.input_globs}: no input file found under {root}")
    return [files[k] for k in sorted(files)]


def _ingest_to_shard(path: str, shard: str, skip_until_snapshot: bool) -> dict[str, Any]:
    """Worker: ingest one raw file into a partial-bars shard; return its summary."""
    from quantnb.data import ingest_file

    t0 = time.perf_counter()
    result = ingest_file(Path(path), skip_until_snapshot=skip_until_snapshot)
    with atomic_path(shard) as tmp:
        result.bars.write_parquet(tmp, compression="zstd")
    return {
        "n_messages": int(result.n_messages),
        "rows": result.bars.height,
        "quality": result.quality.to_dict(),
        "elapsed_s": time.perf_counter() - t0,
    }


def _item_name(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _process_files(ctx: RunContext, params: EtlParams, inputs: list[Path]) -> dict[str, dict[str, Any]]:
    parts_dir = ctx.run_dir / "parts"
    todo = [p for p in inputs if not ctx.checkpoint.is_completed(_item_name(p, ctx.root))]
    skipped = len(inputs) - len(todo)
    if skipped:
        logger.info("Resume: skipping {} file(s) the checkpoint lists as done", skipped)
    ctx.set_total(len(inputs), total_batches=len(inputs))
    reports: dict[str, dict[str, Any]] = {}
    jobs = [(p, _item_name(p, ctx.root), parts_dir / f"{p.name}.parquet") for p in todo]
    if params.executor == "dask":  # items as Dask tasks; this process alone commits and logs them
        shards = {item: (n, shard) for n, (_, item, shard) in enumerate(jobs)}
        with open_executor("dask", n_workers=params.n_workers, scheduler=params.scheduler, ctx=ctx) as ex:
            for p, item, shard in jobs:
                ex.submit(item, _ingest_to_shard, str(p), str(shard), params.skip_until_snapshot)
            for done in ex.as_completed():
                _collect(ctx, done.key, shards[done.key][1], shards[done.key][0], reports, done.result)
        return reports
    if params.n_workers == 1 or len(jobs) <= 1:
        for n, (p, item, shard) in enumerate(jobs):
            _collect(ctx, item, shard, n, reports, lambda p=p, shard=shard: _ingest_to_shard(
                str(p), str(shard), params.skip_until_snapshot))
        return reports
    mp = multiprocessing.get_context("spawn")  # fork of a threaded kernel can deadlock polars
    with ProcessPoolExecutor(min(params.n_workers, len(jobs)), mp_context=mp,
                             initializer=worker_initializer, initargs=ctx.worker_initargs()) as pool:
        futures: list[tuple[str, Path, Future[dict[str, Any]]]] = [
            (item, shard, pool.submit(_ingest_to_shard, str(p), str(shard), params.skip_until_snapshot))
            for p, item, shard in jobs
        ]
        for n, (item, shard, fut) in enumerate(futures):
            _collect(ctx, item, shard, n, reports, fut.result)
    return reports


def _collect(ctx: RunContext, item: str, shard: Path, n: int, reports: dict[str, dict[str, Any]], get: Any) -> None:
    try:
        summary = get()
    except DataError as exc:
        logger.error("{} quarantined: {}", item, exc)
        ctx.checkpoint.mark_failed(item, str(exc))
        ctx.item_done(item, events=0, batch_num=n)
        return
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
    logger.info("{}: {} messages -> {} partial bar rows in {:.2f} s (etl/msgs_per_s={:.0f}); shard {} ({:.1f} kB)",
                item, summary["n_messages"], summary["rows"], summary["elapsed_s"], rate,
                shard.name, shard.stat().st_size / 1024)


def _merge_and_write(ctx: RunContext, params: EtlParams) -> pl.DataFrame:
    from quantnb.data import merge_parts

    shard_paths = sorted((ctx.run_dir / "parts").glob("*.parquet"))
    done = {Path(i).name for i in ctx.checkpoint.completed}
    used = [p for p in shard_paths if p.name.removesuffix(".parquet") in done]
    parts = [pl.read_parquet(p) for p in used]
    out_dir = (ctx.root / params.output_dir).resolve()
    for shard, part in zip(used, parts, strict=True):  # each input's quality report next to its outputs
        report = read_json_tolerant(shard.with_suffix(".quality.json"))
        for symbol in sorted(set(part["symbol"].to_list())) if "symbol" in part.columns else []:
            atomic_write_json(out_dir / symbol / f"{shard.name.removesuffix('.parquet')}.quality.json", report)
    rows = []
    for (symbol, day), frame in sorted(merge_parts(parts).items()):
        dest = out_dir / symbol / f"{day.isoformat()}.parquet"
        with atomic_path(dest) as tmp:
            frame.write_parquet(tmp, compression="zstd")
        gaps = int(frame["gap_before"].sum()) if "gap_before" in frame.columns else 0
        size_kb = dest.stat().st_size / 1024
        logger.info("Saved {} ({} rows, {} gap(s), {:.1f} kB)", dest, frame.height, gaps, size_kb)
        rows.append({"symbol": symbol, "day": day.isoformat(), "rows": frame.height, "gaps": gaps,
                     "path": str(dest.relative_to(ctx.root) if dest.is_relative_to(ctx.root) else dest),
                     "size_kb": round(size_kb, 1)})
    ctx.add_output("parquet_dir", out_dir)
    schema = {"symbol": pl.String, "day": pl.String, "rows": pl.Int64, "gaps": pl.Int64,
              "path": pl.String, "size_kb": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def run_etl(params: EtlParams) -> EtlResult:
    """Run the ETL stage: ingest every input file in parallel, then merge into daily Parquet.

    Parameters
    ----------
    params : EtlParams
        Validated parameters.

    Returns
    -------
    EtlResult
        Outputs table, quarantined files with reasons, quality reports.

    Raises
    ------
    ConfigError
        If no input file matches ``input_globs``.
    KeyboardInterrupt
        On SIGINT/SIGTERM; the run is recorded ``interrupted`` and can be resumed.
    """
    with start_run(params) as ctx:
        inputs = _find_inputs(params, ctx.root)
        logger.info("Found {} input file(s): {}", len(inputs), ", ".join(p.name for p in inputs))
        reports = _process_files(ctx, params, inputs)
        for item in ctx.checkpoint.completed:  # files finished by an earlier attempt of a resumed run
            if item not in reports:
                saved = read_json_tolerant(ctx.run_dir / "parts" / f"{Path(item).name}.quality.json")
                reports[item] = saved if isinstance(saved, dict) else {}
        outputs = _merge_and_write(ctx, params)
        ctx.set_result(parquet_files=outputs.height, quarantined=len(ctx.checkpoint.failed),
                       bars=int(outputs["rows"].sum()) if outputs.height else 0)
    for item, reason in ctx.checkpoint.failed.items():
        logger.warning("Quarantined {}: {}", item, reason.splitlines()[0])
    return EtlResult(ctx.run_id, ctx.status, outputs, dict(ctx.checkpoint.failed), reports)
