"""Labelling stage: SELL / NEUTRAL / BUY (or meta-labels) per ETL Parquet file, with AFML weights.

Each input file is one item, labelled in a worker with the previous file's tail and the next
file's head as context, so rows near midnight get complete windows when the data is contiguous
and each label's ``t1``, ``uniqueness`` and ``return_weight`` equal those of the whole series;
rows whose window is incomplete (end of data, or a gap) are excluded, never labelled from a
partial future. Output goes to ``output_dir`` if given (any absolute folder, or one relative to
the project), else ``<output_root>/<suffix>/`` (e.g. ``data/labelled/SELL_0004_BUY_0008_1h/`` or
``TB_PT1_SL1_VOL1h_1h/``) so configurations never overwrite each other; the run records it as
``outputs.labelled_dir``, which optimization and training take by default.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import polars as pl
from loguru import logger
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from quantnb.classifier import (
    LABEL_NAMES,
    META_LABEL_NAMES,
    format_distribution,
    label_distribution,
    label_events,
    labelling_suffix,
    side_from_column,
)
from quantnb.config import OutputDir, resolve_output_dir
from quantnb.display import HtmlResult
from quantnb.errors import ConfigError, DataError
from quantnb.parallel import ParallelStageParams, open_executor
from quantnb.runs import RunContext, atomic_path, atomic_write_json, start_run

__all__ = ["LabellingParams", "LabellingResult", "run_labelling"]


class LabellingParams(ParallelStageParams):  # + n_workers, executor, scheduler
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
    method: Literal["fixed_horizon", "triple_barrier", "meta"] = Field(
        "fixed_horizon", description="fixed_horizon: forward return over lookahead_min vs the two thresholds; "
                                     "triple_barrier: first of the EWM-volatility barriers and max_holding_min "
                                     "(AFML 3.4); meta: the triple barrier in the direction of a primary side, "
                                     "1 (TAKE) when its profit-taking barrier is touched first, else 0 (AFML 3.6).")
    max_holding_min: PositiveInt = Field(60, description="triple_barrier: vertical barrier, minutes after the bar; "
                                                         "labelling_config.json records it as lookahead_min, the "
                                                         "longest label and so the embargo of later splits.")
    profit_take_mult: PositiveFloat = Field(1.0, description="triple_barrier: upper barrier, in holding-period "
                                                             "volatilities above the price.")
    stop_loss_mult: PositiveFloat = Field(1.0, description="triple_barrier: lower barrier, in volatilities below.")
    vol_span_min: PositiveInt = Field(60, description="triple_barrier: span of the EWM volatility of 1-minute "
                                                      "log returns, minutes.")
    side_rule: Literal["momentum", "column"] = Field(
        "momentum", description="meta: the primary side; momentum: sign of the return over the last momentum_min "
                                "minutes (time-series momentum); column: the bars' column side_col (-1, 0, +1).")
    momentum_min: PositiveInt = Field(60, description="meta, side_rule momentum: look-back, minutes.")
    side_col: str = Field("side", description="meta, side_rule column: the column holding the primary's side.")
    meta_cost_bps: NonNegativeFloat = Field(0.0, description="meta: round-trip cost, bps of notional, that a "
                                                             "profit-taking touch must exceed to be labelled TAKE.")
    cusum_threshold: PositiveFloat | None = Field(None, description="Label only the bars a symmetric CUSUM filter "
                                                                    "on log returns picks (AFML 2.5.2.1); None: all.")

    def run_suffix(self) -> str:
        """Return the label suffix, e.g. ``SELL_0004_BUY_0008_1h`` or ``TB_PT1_SL1_VOL1h_1h``."""
        return labelling_suffix(self.model_dump())

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
class LabellingResult(HtmlResult):
    """What a labelling run produced: the output directory and the label distribution per file."""

    run_id: str
    status: str
    output_dir: Path
    distribution: pl.DataFrame
    quarantined: dict[str, str]

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


def _context_rows(p: dict[str, Any]) -> tuple[int, int]:
    """Rows of the previous file's tail and the next file's head a file needs for exact labels and weights."""
    barrier = p["method"] in ("triple_barrier", "meta")
    span = p["max_holding_min"] if barrier else p["lookahead_min"]
    warmup = 10 * p["vol_span_min"] if barrier else 0
    if p["method"] == "meta" and p["side_rule"] == "momentum":
        warmup += p["momentum_min"]
    return span + warmup, 2 * span + 1


def _label_one(path: str, next_path: str | None, dest: str, p: dict[str, Any],
               prev_path: str | None = None) -> dict[str, Any]:
    """Worker: label one file (with the previous file's tail and the next one's head as context); write atomically."""
    frame = _read_parquet(path)
    if p["price_col"] not in frame.columns:
        raise DataError(f"{path}: no column {p['price_col']!r} (columns: {', '.join(frame.columns)}); "
                        "set price_col to one of them", path=path)
    side_problem = _side_problem(frame, p)
    if side_problem is not None:
        raise DataError(f"{path}: {side_problem}", path=path, field=p["side_col"])
    n_own = frame.height
    own_start, own_end = (frame["ts"][0], frame["ts"][n_own - 1]) if n_own else (None, None)
    n_tail, n_head = _context_rows(p)
    if prev_path is not None and n_own:  # a broken or overlapping previous file is its own problem, not context
        tail = _read_parquet(prev_path).tail(n_tail)
        if set(frame.columns) <= set(tail.columns) and tail.height and tail["ts"][-1] < own_start \
                and _side_problem(tail, p) is None:
            frame = pl.concat([tail.select(frame.columns), frame], how="vertical_relaxed")
    if next_path is not None:
        head = _read_parquet(next_path, n_rows=n_head).select(frame.columns)
        if _side_problem(head, p) is None:
            frame = pl.concat([frame, head], how="vertical_relaxed")
    labelled = label_events(frame, p["method"], lookahead_min=p["lookahead_min"],
                            threshold_short_frac=p["threshold_short_frac"],
                            threshold_long_frac=p["threshold_long_frac"], max_holding_min=p["max_holding_min"],
                            profit_take_mult=p["profit_take_mult"], stop_loss_mult=p["stop_loss_mult"],
                            vol_span_min=p["vol_span_min"], cusum_threshold=p["cusum_threshold"],
                            price_col=p["price_col"], side_rule=p["side_rule"], momentum_min=p["momentum_min"],
                            side_col=p["side_col"], meta_cost_bps=p["meta_cost_bps"],
                            keep_unlabelled=p["method"] == "meta")
    if n_own:
        labelled = labelled.filter((pl.col("ts") >= own_start) & (pl.col("ts") <= own_end))
    with atomic_path(dest) as tmp:
        labelled.write_parquet(tmp, compression="zstd")
    labelled = labelled.filter(pl.col("label").is_not_null())  # meta files keep every bar: count the labels
    return {"rows_in": n_own, "rows_labelled": labelled.height, **_shares(labelled, _class_names(p["method"]))}


def _side_problem(frame: pl.DataFrame, p: dict[str, Any]) -> str | None:
    """Why the bars' side column cannot serve as the primary's side (meta, side_rule column), else None."""
    if p["method"] != "meta" or p["side_rule"] != "column":
        return None
    try:
        side_from_column(frame, p["side_col"])
    except (ConfigError, DataError) as exc:
        return str(exc)
    return None


def _class_names(method: str) -> tuple[str, ...]:
    return META_LABEL_NAMES if method == "meta" else LABEL_NAMES


def _shares(labelled: pl.DataFrame, names: tuple[str, ...]) -> dict[str, float]:
    """Share of each label class (keyed SELL/NEUTRAL/BUY, or SKIP/TAKE for meta-labels)."""
    if names == LABEL_NAMES:
        return label_distribution(labelled)
    counts = [int((labelled["label"] == code).sum()) for code in range(len(names))]
    return {k: (c / labelled.height if labelled.height else 0.0) for k, c in zip(names, counts, strict=True)}


def _format(shares: dict[str, Any], names: tuple[str, ...]) -> str:
    if names == LABEL_NAMES:
        return format_distribution(shares)
    return " | ".join(f"{k}: {100.0 * float(shares.get(k, 0.0)):.1f}%" for k in names)


def _jobs(params: LabellingParams, root: Path, out_dir: Path
          ) -> tuple[list[tuple[str, str, str | None, Path, str | None]], dict[str, str]]:
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
             out_dir / f.name, str(files[i - 1]) if i > 0 else None) for i, f in enumerate(files)], bad


def _record(ctx: RunContext, item: str, dest: Path, n: int, summary: dict[str, Any]) -> None:
    ctx.batch_saved(n, 1, summary["rows_labelled"], dest)
    ctx.checkpoint.mark_completed(item)
    ctx.item_done(item, events=summary["rows_labelled"], batch_num=n)
    excluded = summary["rows_in"] - summary["rows_labelled"]
    logger.debug("{} -> {} ({} rows, {} excluded without a complete future window)",
                Path(item).name, _format(summary, META_LABEL_NAMES if "TAKE" in summary else LABEL_NAMES),
                summary["rows_labelled"], excluded)


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
    ExecutorError
        If a worker process was killed (out of memory, SIGKILL) or a Dask worker cannot see an
        input: the run is ``failed``, nothing is quarantined; resume it.

    Examples
    --------
    >>> params = LabellingParams(input_glob="data/processed/bybit/linear/BTCUSDT/*.parquet", method="triple_barrier")
    >>> result = run_labelling(params)
    >>> result.output_dir, result.distribution  # the folder optimization and training read by default
    """
    with start_run(params) as ctx:
        ctx.add_cumulative_log(ctx.stage_log_dir / "labelling_processing.log")
        out_dir = params.labelled_dir(ctx.root)
        if params.method == "meta":
            side = (f"momentum over {params.momentum_min} min" if params.side_rule == "momentum"
                    else f"column {params.side_col!r}")
            logger.info("Labelling config: meta-labels on the side of {}, +{} / -{} x EWM vol ({} min span) in the "
                        "side's direction, vertical {} min, TAKE only above {} bps cost, price {} -> {}", side,
                        params.profit_take_mult, params.stop_loss_mult, params.vol_span_min, params.max_holding_min,
                        params.meta_cost_bps, params.price_col, out_dir)
        elif params.method == "triple_barrier":
            logger.info("Labelling config: triple barrier, +{} / -{} x EWM vol ({} min span), vertical {} min, "
                        "price {} -> {}", params.profit_take_mult, params.stop_loss_mult, params.vol_span_min,
                        params.max_holding_min, params.price_col, out_dir)
        else:
            logger.info("Labelling config: lookahead {} min, SELL <= {:+.4%}, BUY >= {:+.4%}, price {} -> {}",
                        params.lookahead_min, params.threshold_short_frac, params.threshold_long_frac,
                        params.price_col, out_dir)
        if params.cusum_threshold is not None:
            logger.info("CUSUM filter: only bars where the cumulative log return since the last event passes "
                        "+-{} are labelled", params.cusum_threshold)
        jobs, bad = _jobs(params, ctx.root, out_dir)
        ctx.set_total(len(jobs) + len(bad), total_batches=len(jobs) + len(bad))
        for item, reason in sorted(bad.items()):
            logger.error("{} quarantined: {}", item, reason)
            ctx.checkpoint.mark_failed(item, reason)
        todo = [j for j in jobs if not ctx.checkpoint.is_completed(j[0])]
        if len(todo) < len(jobs):
            logger.info("Resume: skipping {} labelled file(s)", len(jobs) - len(todo))
        _label_files(ctx, params, todo)
        names = _class_names(params.method)
        table = _distribution_table(out_dir, names)
        totals = {k: float(table[k].sum()) for k in names} if table.height else {}
        n_rows = sum(totals.values()) or 1
        effective = float(table["effective_labels"].sum()) if table.height else 0.0
        logger.info("Total -> {} | mean uniqueness {:.4f}: about {:,.0f} effectively independent labels",
                    _format({k: v / n_rows for k, v in totals.items()}, names), effective / n_rows, effective)
        atomic_write_json(out_dir / "labelling_config.json", {
            **params.model_dump(mode="json", exclude=set(params.execution_fields)), "suffix": params.run_suffix(),
            **({"lookahead_min": params.max_holding_min} if params.method in ("triple_barrier", "meta") else {}),
            "run_id": ctx.run_id, "label_counts": totals})
        ctx.add_output("labelled_dir", out_dir)
        ctx.set_result(rows=int(n_rows), **{f"frac_{k.lower()}": v / n_rows for k, v in totals.items()})
        ctx.record_metrics(distribution={k: round(v / n_rows, 4) for k, v in totals.items()}, rows=int(n_rows),
                           mean_uniqueness=round(effective / n_rows, 6))
    return LabellingResult(ctx.run_id, ctx.status, out_dir, table, dict(ctx.checkpoint.failed))


def _label_files(ctx: RunContext, params: LabellingParams,
                 todo: list[tuple[str, str, str | None, Path, str | None]]) -> None:
    """Label ``todo`` through the stage's executor; record each file here as its task completes."""
    p = params.model_dump()
    index = {job[0]: (n, job) for n, job in enumerate(todo)}
    with open_executor(params, ctx) as ex:
        for item, path, next_path, dest, prev_path in todo:
            ex.submit(item, _label_one, path, next_path, str(dest), p, prev_path,
                      inputs=tuple(f for f in (path, next_path, prev_path) if f is not None))
        for done in ex.as_completed():
            n, job = index[done.key]
            try:
                summary = done.result()
            except DataError as exc:
                logger.error("{} quarantined: {}", done.key, exc)
                ctx.checkpoint.mark_failed(done.key, str(exc))
                continue
            _record(ctx, done.key, job[3], n, summary)


def _distribution_table(out_dir: Path, names: tuple[str, ...] = LABEL_NAMES) -> pl.DataFrame:
    rows = []
    for f in sorted(out_dir.glob("*.parquet")):
        with open(f, "rb") as fh:  # a file of an older version (resumed run) has no uniqueness: it counts 0
            cols: list[str] = [c for c in ("label", "uniqueness") if c in pl.read_parquet_schema(fh)]
            fh.seek(0)
            frame = pl.read_parquet(fh, columns=cols).with_columns(uniqueness=pl.col("uniqueness")
                                                                   if "uniqueness" in cols else pl.lit(0.0))
        counts = frame["label"].value_counts()
        by = dict(zip(counts["label"].to_list(), counts["count"].to_list(), strict=True))
        rows.append({"file": f.name, **{k: by.get(code, 0) for code, k in enumerate(names)},
                     "effective_labels": float(frame["uniqueness"].sum())})
    return pl.DataFrame(rows, schema={"file": pl.String, **dict.fromkeys(names, pl.Int64),
                                      "effective_labels": pl.Float64})
