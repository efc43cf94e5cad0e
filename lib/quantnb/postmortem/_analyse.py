from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import polars as pl

from quantnb.errors import ConfigError
from quantnb.runlog import read_heartbeat, read_json_tolerant, read_run_record

_LEVEL = re.compile(r"^\S+ \S+ \| (?P<level>[A-Z]+)\s*\| ")
_MONOTONIC_MIN_BATCHES = 3


@dataclasses.dataclass
class PostmortemReport:
    """Where a run stopped and how it behaved, reconstructed from its files.

    Attributes
    ----------
    run_id, stage, status : str
        ``status`` is the heartbeat's, with a dead pid read as ``interrupted``.
    pid_alive : bool
        Whether the process that wrote the heartbeat still runs.
    last_item, last_batch_shard : str or None
        The last finished item (heartbeat) and the last shard saved (batch TSV).
    items_done, items_failed, items_total : int or None
        From the checkpoint and heartbeat; ``items_remaining`` is derived.
    shards_logged, shards_missing, shards_orphaned : list of str
        Shards in the batch TSV; those not on disk; files next to them not logged
        (including temporary files of an interrupted atomic write).
    memory_gb : dict
        ``min``, ``max``, ``mean`` over the heartbeat lines (GB).
    memory_rising : bool
        True when memory rose at every one of at least 3 batches: a possible leak.
    heartbeat, batches : polars.DataFrame
        This run's heartbeat and batch TSV rows (timestamp parsed as UTC).
    throughput : polars.DataFrame
        ``minute`` (UTC), ``items`` and ``events`` per minute.
    log_counts : dict
        Lines per level in the session log(s).
    last_errors : list of str
        The last ERROR/CRITICAL lines of the log, newest last.
    """

    run_id: str
    stage: str
    status: str
    pid_alive: bool
    last_item: str | None
    last_batch_shard: str | None
    items_done: int
    items_failed: int
    items_total: int | None
    shards_logged: list[str]
    shards_missing: list[str]
    shards_orphaned: list[str]
    memory_gb: dict[str, float]
    memory_rising: bool
    heartbeat: pl.DataFrame
    batches: pl.DataFrame
    throughput: pl.DataFrame
    log_counts: dict[str, int]
    last_errors: list[str]
    failed_items: dict[str, str]

    @property
    def items_remaining(self) -> int | None:
        """Items neither completed nor failed, or None without a known total."""
        if self.items_total is None:
            return None
        return max(self.items_total - self.items_done - self.items_failed, 0)

    def to_dict(self) -> dict[str, Any]:
        """Return the report's scalar fields as a JSON-serialisable dict."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if not isinstance(getattr(self, f.name), pl.DataFrame)}
        out["items_remaining"] = self.items_remaining
        return out

    def summary(self) -> str:
        """Return a readable multi-line report."""
        m = self.memory_gb
        lines = [
            f"Run {self.run_id} (stage {self.stage}): {self.status.upper()}"
            + ("" if self.pid_alive or self.status != "interrupted" else " (process is dead)"),
            f"  stopped after item: {self.last_item}; last shard saved: {self.last_batch_shard}",
            f"  items: {self.items_done} done, {self.items_failed} failed, "
            f"{self.items_remaining if self.items_remaining is not None else '?'} remaining "
            f"of {self.items_total if self.items_total is not None else '?'}",
            f"  shards: {len(self.shards_logged)} logged, {len(self.shards_missing)} missing on disk, "
            f"{len(self.shards_orphaned)} orphaned",
            f"  memory: min {m.get('min', float('nan')):.3f} / max {m.get('max', float('nan')):.3f} / "
            f"mean {m.get('mean', float('nan')):.3f} GB"
            + ("  WARNING: rising at every batch (possible leak)" if self.memory_rising else ""),
            f"  log lines: {self.log_counts}",
        ]
        lines += [f"  missing shard: {s}" for s in self.shards_missing]
        lines += [f"  orphaned file: {s}" for s in self.shards_orphaned]
        lines += [f"  failed item {k}: {v.splitlines()[0] if v else ''}" for k, v in self.failed_items.items()]
        lines += [f"  last error: {e}" for e in self.last_errors]
        return "\n".join(lines)


def find_latest_run(root: Path, stage: str | None = None, exclude_stage: str | None = "postmortem") -> str:
    """Return the run id in ``root/runs`` that started last (optionally of one stage).

    Raises
    ------
    ConfigError
        If there is no such run.
    """
    best: tuple[str, str] | None = None
    for rec_path in (root / "runs").glob("*/run.json"):
        rec = read_run_record(rec_path.parent) or {}
        if stage and rec.get("stage") != stage:
            continue
        if not stage and exclude_stage and rec.get("stage") == exclude_stage:
            continue
        key = (str(rec.get("started_at", "")), rec_path.parent.name)
        best = key if best is None or key > best else best
    if best is None:
        raise ConfigError(f"no run{' of stage ' + stage if stage else ''} under {root / 'runs'}")
    return best[1]


def _read_tsv(paths: list[Path], run_id: str) -> pl.DataFrame:
    frames = []
    for p in paths:
        try:
            df = pl.read_csv(p, separator="\t", infer_schema=False, truncate_ragged_lines=True,
                             ignore_errors=True, quote_char=None)
        except (pl.exceptions.NoDataError, pl.exceptions.ComputeError):
            continue
        if "run_id" in df.columns:
            frames.append(df.filter(pl.col("run_id") == run_id))
    if not frames:
        return pl.DataFrame()
    df = pl.concat(frames, how="diagonal")
    df = df.with_columns(pl.col("timestamp").str.to_datetime("%Y-%m-%dT%H:%M:%S%.3fZ", time_zone="UTC",
                                                             strict=False))
    num = [c for c in ("mem_gb", "events_count", "total_events", "batch_num", "items_count") if c in df.columns]
    return df.with_columns([pl.col(c).cast(pl.Float64, strict=False) for c in num]).drop_nulls("timestamp")


def _log_stats(log_path: Path) -> tuple[dict[str, int], list[str]]:
    counts: dict[str, int] = {}
    errors: list[str] = []
    if not log_path.exists():
        return counts, errors
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            m = _LEVEL.match(line)
            if not m:
                continue
            level = m.group("level")
            counts[level] = counts.get(level, 0) + 1
            if level in ("ERROR", "CRITICAL"):
                errors.append(line.rstrip()[:500])
    return counts, errors[-5:]


def _shards(batches: pl.DataFrame, root: Path) -> tuple[list[str], list[str], list[str]]:
    if batches.is_empty():
        return [], [], []
    logged = list(dict.fromkeys(batches["shard_file"].to_list()))
    paths = [Path(s) if Path(s).is_absolute() else root / s for s in logged]
    missing = [s for s, p in zip(logged, paths, strict=True) if not p.exists()]
    known = {p.resolve() for p in paths}
    orphaned = []
    for folder in sorted({p.parent for p in paths}):
        for f in sorted(folder.glob("*")):
            suffixes = {p.suffix for p in paths}
            if f.resolve() not in known and (f.suffix in suffixes or f.name.endswith(".tmp")):
                orphaned.append(str(f))
    return logged, missing, orphaned


def analyse_run(root: Path, run_id: str) -> PostmortemReport:
    """Reconstruct what run ``run_id`` did from the files under ``root``.

    Parameters
    ----------
    root : pathlib.Path
        Project directory.
    run_id : str
        Run to analyse (a directory of ``root/runs``).

    Returns
    -------
    PostmortemReport

    Raises
    ------
    ConfigError
        If the run has neither a run.json nor a heartbeat JSON.
    """
    rec = read_run_record(root / "runs" / run_id) or {}
    hb = read_heartbeat(root / "logs" / "heartbeats" / f"{run_id}_heartbeat.json")
    if not rec and hb is None:
        raise ConfigError(f"run_id={run_id!r}: no runs/{run_id}/run.json and no heartbeat under {root}")
    hb = hb or {}
    stage = rec.get("stage") or hb.get("stage") or run_id.split("_")[0]
    ckpt = read_json_tolerant(root / "logs" / "checkpoints" / f"{run_id}_completed.json") or {}
    status = hb.get("status") or rec.get("status") or "unknown"
    if rec.get("status") in ("failed", "interrupted") and status == "running":
        status = rec["status"]
    stage_dir = root / "logs" / stage
    heart = _read_tsv(sorted(stage_dir.glob("heartbeat_*.log")), run_id)
    batches = _read_tsv(sorted(stage_dir.glob("batches_*.log")), run_id)
    logged, missing, orphaned = _shards(batches, root)
    mem = heart["mem_gb"].drop_nulls() if "mem_gb" in heart.columns else pl.Series([], dtype=pl.Float64)
    bmem = batches["mem_gb"].drop_nulls().to_list() if "mem_gb" in batches.columns else []
    rising = len(bmem) >= _MONOTONIC_MIN_BATCHES and all(b > a for a, b in zip(bmem, bmem[1:], strict=False))
    if heart.is_empty():
        throughput = pl.DataFrame(schema={"minute": pl.Datetime("us", "UTC"), "items": pl.UInt32,
                                          "events": pl.Float64})
    else:
        throughput = (heart.group_by(pl.col("timestamp").dt.truncate("1m").alias("minute"))
                      .agg(pl.len().alias("items"), pl.col("events_count").sum().alias("events"))
                      .sort("minute"))
    counts, errors = _log_stats(root / rec["log"] if rec.get("log") else stage_dir / f"{run_id}.log")
    # the TSV has a line per item; the JSON is throttled to once a second and may lag
    last_item = heart["item"][-1] if not heart.is_empty() else hb.get("last_item")
    return PostmortemReport(
        run_id=run_id, stage=stage, status=status, pid_alive=bool(hb.get("pid_alive", False)),
        last_item=last_item, last_batch_shard=logged[-1] if logged else None,
        items_done=int(ckpt.get("total_completed", len(ckpt.get("completed", [])))),
        items_failed=len(ckpt.get("failed", {})), items_total=hb.get("total_items"),
        shards_logged=logged, shards_missing=missing, shards_orphaned=orphaned,
        memory_gb={"min": float(mem.min()), "max": float(mem.max()), "mean": float(mem.mean())} if len(mem) else {},
        memory_rising=rising, heartbeat=heart, batches=batches, throughput=throughput,
        log_counts=counts, last_errors=errors, failed_items=dict(ckpt.get("failed", {})),
    )
