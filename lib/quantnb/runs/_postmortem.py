"""Reconstruct what a run did from its files: where it stopped, why, memory, progress, curves."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, cast

import numpy as np
import polars as pl

from quantnb.errors import ConfigError
from quantnb.runs._atomic import read_json_tolerant
from quantnb.runs._heartbeat import read_heartbeat
from quantnb.runs._layout import RunPaths, record_files, run_dir, runs_dir
from quantnb.runs._record import read_run_record

_LINE = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) \| (?P<level>[A-Z]+)\s*\| (?P<rest>.*)$")
_MESSAGE = re.compile(r"^[^|]*\|[^|]*\| (?P<msg>.*)$")  # "process:thread | name:line | message"
_TIMELINE_LEVELS = ("WARNING", "ERROR", "CRITICAL")
# A progress line: "3/10", "40.0%", "steps=4000", "epoch 3" (the stages' own progress messages)
_PROGRESS = re.compile(r"\b\d+/\d+\b|\d+(?:\.\d+)?%|steps=\d+|\b[Ee]poch \d+|\bTrial \d+")
_CAUSE_PATTERNS = (
    re.compile(r"Received (SIG[A-Z]+)"),
    re.compile(r"Run \S+ interrupted: (.+)"),
    re.compile(r"Run \S+ failed: (.+)"),
    re.compile(r"Uncaught exception.*"),
    re.compile(r"(MemoryError.*|Killed.*|out of memory.*)", re.IGNORECASE),
)
_EPOCH = re.compile(r"Epoch (?P<epoch>\d+)/\d+ \| Train Loss: (?P<train_loss>[-\d.e+naif]+) \| "
                    r"Val Loss: (?P<val_loss>[-\d.e+naif]+) \| F1 Macro: (?P<f1_macro>[-\d.e+naif]+)")
_TRIAL_EPOCH = re.compile(r"Trial (?P<trial>\d+) epoch (?P<epoch>\d+): val/f1_macro=(?P<f1_macro>[-\d.e+naif]+)")
_TRIAL_END = re.compile(r"Trial (?P<trial>\d+) (?P<state>complete|pruned|fail)\w* \(value (?P<value>[^)]*)\)")

# A leak is a trend, not a wiggle: at least LEAK_MIN_POINTS samples, a least-squares slope of at
# least LEAK_MIN_SLOPE_MB_PER_H, a fitted rise of at least LEAK_MIN_RISE_FRAC of the fitted start
# over the run, and a fit that explains the data (R^2 >= LEAK_MIN_R2).
LEAK_MIN_POINTS = 10
LEAK_MIN_SLOPE_MB_PER_H = 100.0
LEAK_MIN_RISE_FRAC = 0.2
LEAK_MIN_R2 = 0.6


@dataclasses.dataclass
class PostmortemReport:
    """Where a run stopped, why, and how it behaved, reconstructed from its files (memory in GB, times UTC)."""

    run_id: str
    stage: str
    status: str  # run.json's; a running run with dead processes is read (and recorded) as interrupted
    pid_alive: bool  # the process that wrote the heartbeat still runs
    last_item: str | None  # the last finished item (heartbeat TSV)
    last_batch_shard: str | None  # the last shard saved (batch TSV)
    items_done: int  # from the checkpoint, or the heartbeat for runs without one (live)
    items_failed: int
    items_total: int | None  # the final total (follows early stopping); None for open-ended runs
    shards_logged: list[str]  # shards in the batch TSV
    shards_missing: list[str]  # logged, not on disk, and not pruned
    shards_orphaned: list[str]  # files next to them not logged (temporary files of an interrupted write too)
    memory_gb: dict[str, float]  # min, max, mean over the heartbeat lines
    memory_rising: bool  # a sustained trend only (the LEAK_* thresholds): a possible leak
    heartbeat: pl.DataFrame  # this run's heartbeat TSV rows
    batches: pl.DataFrame  # this run's batch TSV rows
    throughput: pl.DataFrame  # minute, items, events per minute
    log_counts: dict[str, int]  # lines per level in the session log(s)
    last_errors: list[str]  # the last ERROR/CRITICAL lines, newest last
    failed_items: dict[str, str]  # item to reason
    shards_pruned: list[str] = dataclasses.field(default_factory=list)  # by design (set_shard_retention)
    memory_trend: dict[str, Any] = dataclasses.field(default_factory=dict)  # memory_trend()'s fit
    last_progress: str | None = None  # the log's last progress line, else the last item with done/total
    last_log_line: str | None = None  # what the run was doing when it stopped
    cause: str | None = None  # signal, exception or dead process, when the files know it
    resume_command: str | None = None  # the exact command that continues the run; None when completed
    stopped_early: bool = False  # completed before its first declared total (early stopping)
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)  # run.json's headline metrics
    # training: epoch, train_loss, val_loss, f1_macro; optimization: trial, epoch, f1_macro (from the log)
    learning_curve: pl.DataFrame = dataclasses.field(default_factory=pl.DataFrame)
    trials: pl.DataFrame = dataclasses.field(default_factory=pl.DataFrame)  # trial, state, value, best_so_far
    timeline: pl.DataFrame = dataclasses.field(default_factory=pl.DataFrame)  # WARNING and above: ts, level, msg

    @property
    def finished(self) -> bool:
        """Whether the run completed (with or without quarantined items)."""
        return self.status in ("completed", "completed_with_errors")

    @property
    def items_remaining(self) -> int | None:
        """Items neither completed nor failed: 0 for a completed run, None without a total."""
        if self.finished:
            return 0
        if self.items_total is None:
            return None
        return max(self.items_total - self.items_done - self.items_failed, 0)

    def to_dict(self) -> dict[str, Any]:
        """Return the report's scalar fields as a JSON-serialisable dict."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if not isinstance(getattr(self, f.name), pl.DataFrame)}
        out["items_remaining"] = self.items_remaining
        out["timeline"] = [{**r, "timestamp": str(r["timestamp"])} for r in self.timeline.to_dicts()]
        return out

    def _items_line(self) -> str:
        done = f"{self.items_done} done, {self.items_failed} failed"
        if self.items_total is None:
            return f"  items: {done} (open-ended run: no total)"
        if self.finished:
            early = " (stopped early: the declared total was reached sooner)" if self.stopped_early else ""
            return f"  items: {done} of {self.items_total}, none remaining{early}"
        return f"  items: {done}, {self.items_remaining} remaining of {self.items_total}"

    def summary(self) -> str:
        """Return a readable multi-line report."""
        m, t = self.memory_gb, self.memory_trend
        lines = [
            f"Run {self.run_id} (stage {self.stage}): {self.status.upper()}"
            + ("" if self.pid_alive or self.status != "interrupted" else " (process is dead)"),
        ]
        if self.cause:
            lines.append(f"  cause: {self.cause}")
        lines += [
            f"  last progress: {self.last_progress or 'none recorded'}",
            f"  stopped after item: {self.last_item}; last shard saved: {self.last_batch_shard}",
            self._items_line(),
            f"  shards: {len(self.shards_logged)} logged, {len(self.shards_missing)} missing on disk, "
            f"{len(self.shards_pruned)} pruned by design, {len(self.shards_orphaned)} orphaned",
        ]
        if m:
            trend = ""
            if t.get("slope_mb_per_h") is not None and t.get("points", 0) >= LEAK_MIN_POINTS:
                trend = f"; trend {t['slope_mb_per_h']:+.0f} MB/h over {t['points']} points"
            lines.append(f"  memory: min {m['min']:.3f} / max {m['max']:.3f} / mean {m['mean']:.3f} GB{trend}"
                         + (f"  WARNING: sustained rise (possible leak): >= {LEAK_MIN_SLOPE_MB_PER_H:.0f} MB/h "
                            f"and +{t['rise_frac']:.0%} over the run" if self.memory_rising else ""))
        if self.metrics:
            lines.append("  metrics: " + ", ".join(f"{k}={v}" for k, v in self.metrics.items()))
        lines.append(f"  log lines: {self.log_counts}")
        if self.last_log_line:
            lines.append(f"  last log line: {self.last_log_line}")
        lines += [f"  missing shard: {s}" for s in self.shards_missing]
        lines += [f"  orphaned file: {s}" for s in self.shards_orphaned]
        lines += [f"  failed item {k}: {v.splitlines()[0] if v else ''}" for k, v in self.failed_items.items()]
        lines += [f"  last error: {e}" for e in self.last_errors]
        if self.resume_command:
            lines.append(f"  resume with: {self.resume_command}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        return "<pre>" + html.escape(self.summary()) + "</pre>"


def find_latest_run(root: Path, stage: str | None = None, exclude_stage: str | None = "postmortem") -> str:
    """Return the run id in ``root/runs`` that started last (optionally of one stage).

    Parameters
    ----------
    root : Path
        Project directory (holding ``runs/``).
    stage : str or None
        Only runs of this stage; None for any.
    exclude_stage : str or None, default "postmortem"
        Skip runs of this stage (post-mortems do not analyse each other by default).

    Returns
    -------
    str
        The run id (the folder name).

    Raises
    ------
    ConfigError
        If there is no such run.
    """
    best: tuple[str, str] | None = None
    for rec_path in record_files(root):
        rec = read_run_record(rec_path.parent) or {}
        if stage and rec.get("stage") != stage:
            continue
        if not stage and exclude_stage and rec.get("stage") == exclude_stage:
            continue
        key = (str(rec.get("started_at", "")), rec_path.parent.name)
        best = key if best is None or key > best else best
    if best is None:
        raise ConfigError(f"no run{' of stage ' + stage if stage else ''} under {runs_dir(root)}")
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


@dataclasses.dataclass
class _LogScan:
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    errors: list[str] = dataclasses.field(default_factory=list)
    timeline: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    causes: list[str] = dataclasses.field(default_factory=list)
    last_line: str | None = None
    last_progress_line: str | None = None
    epochs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    trial_epochs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    trial_ends: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _scan_log(log_path: Path, run_id: str) -> _LogScan:
    scan = _LogScan()
    if not log_path.exists():
        return scan
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        for raw in fh:
            m = _LINE.match(raw.rstrip("\n"))
            if not m:
                continue
            level, rest = m.group("level"), m.group("rest")
            mm = _MESSAGE.match(rest)
            msg = mm.group("msg") if mm else rest
            scan.counts[level] = scan.counts.get(level, 0) + 1
            scan.last_line = raw.rstrip()[:300]
            if level in ("INFO", "SUCCESS") and _PROGRESS.search(msg):
                scan.last_progress_line = f"{m.group('ts')} {msg}"[:300]
            if level in _TIMELINE_LEVELS:
                scan.timeline.append({"timestamp": m.group("ts"), "level": level, "message": msg[:300]})
            if level in ("ERROR", "CRITICAL"):
                scan.errors.append(raw.rstrip()[:500])
            for pat in _CAUSE_PATTERNS:
                c = pat.search(msg)
                if c:
                    scan.causes.append(msg[:300])
                    break
            if (e := _EPOCH.search(msg)) is not None:
                scan.epochs.append({k: (int(v) if k == "epoch" else _float(v)) for k, v in e.groupdict().items()})
            elif (e := _TRIAL_EPOCH.search(msg)) is not None:
                scan.trial_epochs.append({"trial": int(e["trial"]), "epoch": int(e["epoch"]),
                                          "f1_macro": _float(e["f1_macro"])})
            elif (e := _TRIAL_END.search(msg)) is not None:
                scan.trial_ends.append({"trial": int(e["trial"]), "state": e["state"], "value": _float(e["value"])})
    scan.errors = scan.errors[-5:]
    return scan


def _shards(batches: pl.DataFrame, root: Path, keep_last: int | None) -> tuple[list[str], ...]:
    if batches.is_empty():
        return [], [], [], []
    logged = list(dict.fromkeys(batches["shard_file"].to_list()))
    paths = [Path(s) if Path(s).is_absolute() else root / s for s in logged]
    expected = set(range(len(logged)))
    if keep_last is not None:  # rolling checkpoints: only the newest keep_last must exist
        expected = set(range(max(len(logged) - keep_last, 0), len(logged)))
    missing = [s for n, (s, p) in enumerate(zip(logged, paths, strict=True)) if n in expected and not p.exists()]
    pruned = [s for n, (s, p) in enumerate(zip(logged, paths, strict=True)) if n not in expected and not p.exists()]
    known = {p.resolve() for p in paths}
    suffixes = {p.suffix for p in paths}
    orphaned = []
    for folder in sorted({p.parent for p in paths}):
        for f in sorted(folder.glob("*")):
            if f.resolve() not in known and (f.name.endswith(".tmp") or (keep_last is None and f.suffix in suffixes)):
                orphaned.append(str(f))
    return logged, missing, pruned, orphaned


def memory_trend(heart: pl.DataFrame) -> dict[str, Any]:
    """Fit memory over time: points, slope_mb_per_h, rise_frac, r2 (None under 2 points), thresholds."""
    out: dict[str, Any] = {"points": 0, "slope_mb_per_h": None, "rise_frac": None, "r2": None,
                           "min_points": LEAK_MIN_POINTS, "min_slope_mb_per_h": LEAK_MIN_SLOPE_MB_PER_H,
                           "min_rise_frac": LEAK_MIN_RISE_FRAC, "min_r2": LEAK_MIN_R2}
    if heart.is_empty() or "mem_gb" not in heart.columns:
        return out
    df = heart.select("timestamp", "mem_gb").drop_nulls()
    out["points"] = df.height
    if df.height < 2:
        return out
    t_h = (df["timestamp"] - df["timestamp"][0]).dt.total_milliseconds().to_numpy() / 3.6e6
    mem_mb = df["mem_gb"].to_numpy() * 1000
    if float(np.ptp(t_h)) <= 0:
        return out
    slope, intercept = np.polyfit(t_h, mem_mb, 1)
    fitted = slope * t_h + intercept
    ss_res = float(((mem_mb - fitted) ** 2).sum())
    ss_tot = float(((mem_mb - mem_mb.mean()) ** 2).sum())
    start = float(fitted[0]) if fitted[0] > 0 else float(mem_mb.min() or 1.0)
    out.update(slope_mb_per_h=float(slope), rise_frac=float((fitted[-1] - fitted[0]) / max(start, 1e-9)),
               r2=1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0)
    return out


def is_leak(trend: dict[str, Any]) -> bool:
    """Return whether a :func:`memory_trend` meets every leak threshold."""
    return (trend["points"] >= LEAK_MIN_POINTS and trend["slope_mb_per_h"] is not None
            and trend["slope_mb_per_h"] >= LEAK_MIN_SLOPE_MB_PER_H and trend["rise_frac"] >= LEAK_MIN_RISE_FRAC
            and trend["r2"] >= LEAK_MIN_R2)


def _cause(rec: dict[str, Any], scan: _LogScan, status: str) -> str | None:
    if status in ("completed", "completed_with_errors", "running"):
        return None
    failure = rec.get("failure") or {}
    if isinstance(failure, dict) and failure.get("ename"):
        return f"{failure['ename']}: {failure.get('evalue', '')}"[:300]
    if rec.get("error"):
        return str(rec["error"])[:300]
    if scan.causes:
        return scan.causes[-1]
    if rec.get("interrupted_reason"):
        return str(rec["interrupted_reason"]) + "; the log names no signal or exception"
    return None


def _min_max_mean(mem: pl.Series) -> dict[str, float]:
    """Return the memory column's min, max and mean in GB ({} if empty)."""
    if not len(mem):
        return {}
    return {k: float(cast(float, v)) for k, v in (("min", mem.min()), ("max", mem.max()), ("mean", mem.mean()))}


def analyse_run(root: Path, run_id: str) -> PostmortemReport:
    """Reconstruct what run ``run_id`` did from the files under ``root``.

    Reading the run marks a ``running`` run whose processes are dead as
    ``interrupted`` in its run.json (see :func:`~quantnb.runs._record.mark_dead_run_interrupted`).

    Parameters
    ----------
    root : pathlib.Path
        Project directory.
    run_id : str
        Run to analyse (a directory of ``root/runs``).

    Raises
    ------
    ConfigError
        If the run has neither a run.json nor a heartbeat JSON.
    """
    rec = read_run_record(run_dir(root, run_id)) or {}
    stage = rec.get("stage") or run_id.split("_")[0]
    paths = RunPaths(root, run_id, stage)
    hb = read_heartbeat(paths.heartbeat_json)
    if not rec and hb is None:
        raise ConfigError(f"run_id={run_id!r}: no runs/{run_id}/run.json and no heartbeat under {root}")
    hb = hb or {}
    if not rec.get("stage") and hb.get("stage"):
        stage = hb["stage"]
        paths = RunPaths(root, run_id, stage)
    ckpt = read_json_tolerant(paths.checkpoint) or {}
    status = rec.get("status") or hb.get("status") or "unknown"
    if status in ("running", "pending") and hb.get("status") in ("interrupted", "failed"):
        status = hb["status"]
    heart = _read_tsv(paths.daily_tsvs("heartbeat"), run_id)
    batches = _read_tsv(paths.daily_tsvs("batches"), run_id)
    keep_last = (rec.get("shard_retention") or {}).get("keep_last")
    logged, missing, pruned, orphaned = _shards(batches, root, keep_last)
    mem = heart["mem_gb"].drop_nulls() if "mem_gb" in heart.columns else pl.Series([], dtype=pl.Float64)
    trend = memory_trend(heart)
    if heart.is_empty():
        throughput = pl.DataFrame(schema={"minute": pl.Datetime("us", "UTC"), "items": pl.UInt32,
                                          "events": pl.Float64})
    else:
        throughput = (heart.group_by(pl.col("timestamp").dt.truncate("1m").alias("minute"))
                      .agg(pl.len().alias("items"), pl.col("events_count").sum().alias("events"))
                      .sort("minute"))
    scan = _scan_log(root / rec["log"] if rec.get("log") else paths.session_log, run_id)
    # the TSV has a line per item; the JSON is throttled to once a second and may lag
    last_item = heart["item"][-1] if not heart.is_empty() else hb.get("last_item")
    completed = len(ckpt.get("completed", []))
    failed = len(ckpt.get("failed", {}))
    done = int(ckpt.get("total_completed", completed))
    counted = int(hb.get("items_done") or 0) or heart.height  # every item_done, completed or failed
    done = max(done, counted - failed)  # stages that do not checkpoint items (live) count here
    total = hb.get("total_items", rec.get("total_items"))
    finished = status in ("completed", "completed_with_errors")
    declared = hb.get("declared_total_items")  # the first total; an early stop shrinks total_items
    stopped_early = bool(finished and total is not None and declared is not None and total < declared)
    last_progress = scan.last_progress_line
    if last_progress is None and last_item is not None:
        when = str(heart["timestamp"][-1]) if not heart.is_empty() else hb.get("last_timestamp")
        of = f" of {total}" if total is not None else ""
        last_progress = f"{last_item} at {when} ({done + failed} done{of})"
    resume = None
    if status in ("interrupted", "failed"):
        resume = f"quantnb run {stage} --resume {run_id}"
    timeline = (pl.DataFrame(scan.timeline).with_columns(
        pl.col("timestamp").str.to_datetime("%Y-%m-%d %H:%M:%S%.3f", time_zone="UTC", strict=False))
        if scan.timeline else pl.DataFrame(schema={"timestamp": pl.Datetime("us", "UTC"), "level": pl.String,
                                                     "message": pl.String}))
    if scan.epochs:
        curve = pl.DataFrame(scan.epochs).unique("epoch", keep="last").sort("epoch")
    elif scan.trial_epochs:
        curve = pl.DataFrame(scan.trial_epochs).unique(["trial", "epoch"], keep="last").sort("trial", "epoch")
    else:
        curve = pl.DataFrame()
    trials = pl.DataFrame()
    if scan.trial_ends:
        trials = (pl.DataFrame(scan.trial_ends).unique("trial", keep="last").sort("trial")
                  .with_columns(pl.col("value").cum_max().alias("best_so_far")))
    return PostmortemReport(
        run_id=run_id, stage=stage, status=status, pid_alive=bool(hb.get("pid_alive", False)),
        last_item=last_item, last_batch_shard=logged[-1] if logged else None,
        items_done=done, items_failed=failed, items_total=total,
        shards_logged=logged, shards_missing=missing, shards_orphaned=orphaned, shards_pruned=pruned,
        memory_gb=_min_max_mean(mem),
        memory_rising=is_leak(trend), memory_trend=trend, heartbeat=heart, batches=batches,
        throughput=throughput, log_counts=scan.counts, last_errors=scan.errors,
        failed_items=dict(ckpt.get("failed", {})), last_progress=last_progress, last_log_line=scan.last_line,
        cause=_cause(rec, scan, status), resume_command=resume, stopped_early=stopped_early,
        metrics=dict(rec.get("metrics") or {}), learning_curve=curve, trials=trials, timeline=timeline,
    )
