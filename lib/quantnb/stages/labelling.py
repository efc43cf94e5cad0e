"""Labelling stage: SELL / NEUTRAL / BUY from forward returns over a lookahead, per ETL Parquet file.

Each input file is one item, labelled in a worker with the first ``lookahead_min`` bars of the
next file appended as future context, so rows near midnight get complete windows when the data
is contiguous; rows whose window is incomplete (end of data, or a gap) are excluded, never
labelled from a partial future. Output goes to ``output_dir`` if given (any absolute folder, or
one relative to the project), else ``<output_root>/<suffix>/`` (e.g.
``data/labelled/SELL_0004_BUY_0008_1h/``) so configurations never overwrite each other; the run
records it as ``outputs.labelled_dir``, which optimization and training take by default.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl
from loguru import logger
from pydantic import Field, PositiveInt

from quantnb.config import OutputDir, resolve_output_dir
from quantnb.display import result_html
from quantnb.errors import ConfigError, DataError
from quantnb.parallel import ParallelStageParams, open_executor
from quantnb.research import format_distribution, label_bars, label_distribution, label_suffix
from quantnb.runlog import RunContext, atomic_path, atomic_write_json, start_run, worker_initializer

__all__ = ["LabellingParams", "LabellingResult", "run_labelling"]


class LabellingParams(ParallelStageParams):  # + executor, scheduler
    """Parameters of the labelling stage."""

    stage = "labelling"
    input_glob: str = Field("data/processed/unknown/perp/BTC-PERP/*.parquet",
                            description="ETL Parquet files of one instrument to label: a path or glob, relative to "
                                        "the project or absolute; '**' matches any number of folders.")
    output_root: OutputDir = Field("data/labelled", description="Labelled files go to <output_root>/<suffix>/ "
                                                             "unless output_dir is given.")
    output_dir: OutputDir | None = Field(
        None, description="Folder of the labelled files, absolute or relative to the project; None: "
                          "<output_root>/<suffix>/. Recorded in run.json as outputs.labelled_dir, which "
                          "optimization and training take by default.")
    lookahead_min: PositiveInt = Field(60, description="Forward-return horizon, minutes.")
    threshold_short_frac: float = Field(-0.004, lt=0, gt=-1, description="SELL if forward return <= this.")
    threshold_long_frac: float = Field(0.008, gt=0, lt=1, description="BUY if forward return >= this.")
    price_col: str = Field("close", description="Price column; 'micro_price_close' where the ETL has books.")
    n_workers: PositiveInt = Field(2, description="Worker processes; 1 runs in-process.")

    def run_suffix(self) -> str:
        """Return the label suffix, e.g. ``SELL_0004_BUY_0008_1h``."""
        return label_suffix(self.lookahead_min, self.threshold_short_frac, self.threshold_long_frac)

    def labelled_dir(self, root: Path) -> Path:
        """Return the absolute folder the labelled files go to.

        Parameters
        ----------
        root : Path
            Project directory (relative folders are taken from it).

        Returns
        -------
        Path
            ``output_dir``, else ``<output_root>/<suffix>``.
        """
        if self.output_dir is not None:
            return resolve_output_dir(self.output_dir, root)
        return resolve_output_dir(self.output_root, root) / self.run_suffix()


@dataclasses.dataclass
class LabellingResult:
    """What a labelling run produced: the output directory and the label distribution per file."""

    run_id: str
    status: str
    output_dir: Path
    distribution: pl.DataFrame
    quarantined: dict[str, str]

    def _repr_html_(self) -> str:  # noqa: D105 (the notebook's display of the result)
        return result_html(self)

    def summary(self) -> pl.DataFrame:
        """Print the total distribution; return the per-file table."""
        print(f"Labelling run {self.run_id}: {self.status} -> {self.output_dir}")
        for path, reason in self.quarantined.items():
            print(f"  QUARANTINED {path}: {reason}")
        return self.distribution


def _read_parquet(path: str | Path, n_rows: int | None = None) -> pl.DataFrame:
    """Read one Parquet file by path, never as a glob (a path may hold ``*``, ``?`` or ``[``)."""
    with open(path, "rb") as fh:
        return pl.read_parquet(fh, n_rows=n_rows)


def _label_one(path: str, next_path: str | None, dest: str, p: dict[str, Any]) -> dict[str, Any]:
    """Worker: label one file (with the next file's head as future context); write it atomically."""
    frame = _read_parquet(path)
    if p["price_col"] not in frame.columns:
        raise DataError(f"{path}: no column {p['price_col']!r} (columns: {', '.join(frame.columns)}); "
                        "set price_col to one of them", path=path)
    n_own = frame.height
    if next_path is not None:
        head = _read_parquet(next_path, n_rows=p["lookahead_min"] + 1).select(frame.columns)
        frame = pl.concat([frame, head], how="vertical_relaxed")
    labelled = label_bars(frame, p["lookahead_min"], p["threshold_short_frac"], p["threshold_long_frac"],
                          price_col=p["price_col"])
    own_end = frame["ts"][n_own - 1]
    labelled = labelled.filter(pl.col("ts") <= own_end)
    with atomic_path(dest) as tmp:
        labelled.write_parquet(tmp, compression="zstd")
    return {"rows_in": n_own, "rows_labelled": labelled.height, **label_distribution(labelled)}


def _jobs(params: LabellingParams, root: Path, out_dir: Path
          ) -> tuple[list[tuple[str, str, str | None, Path]], dict[str, str]]:
    """Expand ``input_glob``: one job per readable file (in time order), and why each other match is not one."""
    from quantnb.data import check_regular_file, expand_glob, item_key, traversed_folder

    matches = [m for m in expand_glob(root, params.input_glob) if not traversed_folder(params.input_glob, m)]
    bad = {item_key(m, root): f"{problem} (matched by input_glob {params.input_glob!r})"
           for m in matches if (problem := check_regular_file(m)) is not None}
    files = sorted((m for m in matches if item_key(m, root) not in bad), key=lambda f: (f.name, str(f)))
    if not files and not bad:
        raise ConfigError(f"input_glob={params.input_glob!r}: no file under {root}; run the etl stage first")
    folders = sorted({item_key(f.parent, root) for f in files})
    if len(folders) > 1:  # files of several instruments (the ETL writes one folder per instrument)
        raise ConfigError(f"input_glob={params.input_glob!r} matches files in {len(folders)} folders "
                          f"({', '.join(folders[:4])}{', ...' if len(folders) > 4 else ''}); the ETL writes one "
                          "folder per instrument (<venue>/<market>/<SYMBOL>/): label one instrument per run, "
                          "e.g. input_glob='data/processed/bybit/linear/BTCUSDT/*.parquet'")
    return [(item_key(f, root), str(f), str(files[i + 1]) if i + 1 < len(files) else None,
             out_dir / f.name) for i, f in enumerate(files)], bad


def _record(ctx: RunContext, item: str, dest: Path, n: int, summary: dict[str, Any]) -> None:
    ctx.batch_saved(n, 1, summary["rows_labelled"], dest)
    ctx.checkpoint.mark_completed(item)
    ctx.item_done(item, events=summary["rows_labelled"], batch_num=n)
    excluded = summary["rows_in"] - summary["rows_labelled"]
    logger.debug("{} -> {} ({} rows, {} excluded without a complete future window)",
                Path(item).name, format_distribution(summary), summary["rows_labelled"], excluded)


def run_labelling(params: LabellingParams) -> LabellingResult:
    """Label every ETL Parquet file into ``output_dir`` (``<output_root>/<suffix>/``) with ``labelling_config.json``.

    Parameters
    ----------
    params : LabellingParams
        The validated stage parameters.

    Returns
    -------
    LabellingResult
        The run id and status, the output folder, the label distribution per file and the quarantined files.

    Raises
    ------
    ConfigError
        If nothing matches ``input_glob``, or it matches files of several folders (instruments).
    """
    with start_run(params) as ctx:
        ctx.add_cumulative_log(ctx.stage_log_dir / "labelling_processing.log")
        out_dir = params.labelled_dir(ctx.root)
        logger.info("Labelling config: lookahead {} min, SELL <= {:+.4%}, BUY >= {:+.4%}, price {} -> {}",
                    params.lookahead_min, params.threshold_short_frac, params.threshold_long_frac,
                    params.price_col, out_dir)
        jobs, bad = _jobs(params, ctx.root, out_dir)
        ctx.set_total(len(jobs) + len(bad), total_batches=len(jobs) + len(bad))
        for item, reason in sorted(bad.items()):
            logger.error("{} quarantined: {}", item, reason)
            ctx.checkpoint.mark_failed(item, reason)
        todo = [j for j in jobs if not ctx.checkpoint.is_completed(j[0])]
        if len(todo) < len(jobs):
            logger.info("Resume: skipping {} labelled file(s)", len(jobs) - len(todo))
        p = params.model_dump()
        if params.executor == "dask":  # items as Dask tasks; this process alone commits and logs them
            _label_on_dask(ctx, params, todo, p)
            todo = []
        mp = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(params.n_workers, mp_context=mp, initializer=worker_initializer,
                                   initargs=ctx.worker_initargs()) if params.n_workers > 1 and len(todo) > 1 else None
        try:
            futures = [(j, pool.submit(_label_one, j[1], j[2], str(j[3]), p) if pool else None) for j in todo]
            for n, (job, fut) in enumerate(futures):
                item = job[0]
                try:
                    summary = fut.result() if fut else _label_one(job[1], job[2], str(job[3]), p)
                except DataError as exc:
                    logger.error("{} quarantined: {}", item, exc)
                    ctx.checkpoint.mark_failed(item, str(exc))
                    continue
                _record(ctx, item, job[3], n, summary)
        finally:
            if pool:
                pool.shutdown(cancel_futures=True)
        table = _distribution_table(out_dir)
        totals = {k: float(table[k].sum()) for k in ("SELL", "NEUTRAL", "BUY")} if table.height else {}
        n_rows = sum(totals.values()) or 1
        logger.info("Total -> {}", format_distribution({k: v / n_rows for k, v in totals.items()}))
        atomic_write_json(out_dir / "labelling_config.json", {
            **params.model_dump(mode="json", exclude=set(params.execution_fields)), "suffix": params.run_suffix(),
            "run_id": ctx.run_id, "label_counts": totals})
        ctx.add_output("labelled_dir", out_dir)
        ctx.set_result(rows=int(n_rows), **{f"frac_{k.lower()}": v / n_rows for k, v in totals.items()})
        ctx.record_metrics(distribution={k: round(v / n_rows, 4) for k, v in totals.items()}, rows=int(n_rows))
    return LabellingResult(ctx.run_id, ctx.status, out_dir, table, dict(ctx.checkpoint.failed))


def _label_on_dask(ctx: RunContext, params: LabellingParams, todo: list[tuple[str, str, str | None, Path]],
                   p: dict[str, Any]) -> None:
    """Label ``todo`` as Dask tasks; record each file here as its task completes."""
    index = {job[0]: (n, job) for n, job in enumerate(todo)}
    with open_executor("dask", n_workers=params.n_workers, scheduler=params.scheduler, ctx=ctx) as ex:
        for item, path, next_path, dest in todo:
            ex.submit(item, _label_one, path, next_path, str(dest), p)
        for done in ex.as_completed():
            n, job = index[done.key]
            try:
                summary = done.result()
            except DataError as exc:
                logger.error("{} quarantined: {}", done.key, exc)
                ctx.checkpoint.mark_failed(done.key, str(exc))
                continue
            _record(ctx, done.key, job[3], n, summary)


def _distribution_table(out_dir: Path) -> pl.DataFrame:
    rows = []
    for f in sorted(out_dir.glob("*.parquet")):
        with open(f, "rb") as fh:
            counts = pl.read_parquet(fh, columns=["label"])["label"].value_counts()
        by = dict(zip(counts["label"].to_list(), counts["count"].to_list(), strict=True))
        rows.append({"file": f.name, "SELL": by.get(0, 0), "NEUTRAL": by.get(1, 0), "BUY": by.get(2, 0)})
    return pl.DataFrame(rows, schema={"file": pl.String, "SELL": pl.Int64, "NEUTRAL": pl.Int64, "BUY": pl.Int64})
