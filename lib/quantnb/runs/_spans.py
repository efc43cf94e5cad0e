"""How many times a test span has been looked at: each run's evaluated spans, in its run.json.

A stage that scores a model on a span of data (optimization's selection data, training's test
split, an agent fold's test block, a live replay) calls :func:`record_test_spans`: the span is
written to the run's ``run.json`` (``test_spans``) and the earlier runs that evaluated on an
overlapping span of the same instrument are counted. No second database: the registry is
``runs/*/run.json``, read through :func:`quantnb.runs.list_runs` like ``quantnb runs``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Sequence
from typing import Any

from loguru import logger

from quantnb._paths import project_root
from quantnb.errors import ConfigError
from quantnb.runs._layout import run_dir
from quantnb.runs._monitor import list_runs
from quantnb.runs._record import read_run_record, update_run_record

SPANS_FIELD = "test_spans"  # run.json: [{"stage", "instrument", "start", "end", "what"}, ...]


@dataclasses.dataclass(frozen=True)
class SpanEvaluation:
    """One evaluation of a run on a span of an instrument's data."""

    run_id: str
    stage: str
    instrument: str  # e.g. BTCUSDT, as the stage names it
    start: dt.datetime  # UTC, both ends included
    end: dt.datetime  # the last label's end time
    what: str  # selection, test split, agent fold 2, replay
    started_at: dt.datetime | None  # when the run started, UTC

    def overlaps(self, instrument: str, start: dt.datetime, end: dt.datetime) -> bool:
        """Return whether this evaluation is on ``instrument`` and shares a moment with ``[start, end]`` (UTC)."""
        return self.instrument == instrument and self.start <= end and start <= self.end


def _utc(value: Any, what: str) -> dt.datetime:
    try:
        t = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{what}={value!r}: not an ISO 8601 time, e.g. 2022-01-25T05:31:00+00:00") from None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def span_evaluations(project_dir: str | os.PathLike[str] | None = None, *,
                     instrument: str | None = None) -> list[SpanEvaluation]:
    """Return every recorded evaluation on a span, newest run first.

    Parameters
    ----------
    project_dir : str, os.PathLike or None
        Project directory; found from the cwd (or ``QUANTNB_HOME``) if None.
    instrument : str, optional
        Only evaluations on this instrument.

    Returns
    -------
    list of SpanEvaluation
        From the ``test_spans`` of every run.json (any status: a failed run looked at its span too);
        an entry that cannot be read is skipped with a DEBUG line.
    """
    root = project_root(project_dir)
    out = []
    for summary in list_runs(root):
        rec = read_run_record(run_dir(root, summary.run_id), detect_dead=False) or {}
        for item in rec.get(SPANS_FIELD) or []:
            try:
                ev = SpanEvaluation(summary.run_id, str(item.get("stage") or summary.stage), str(item["instrument"]),
                                    _utc(item["start"], "start"), _utc(item["end"], "end"),
                                    str(item.get("what") or ""), summary.started_at)
            except (KeyError, TypeError, AttributeError, ConfigError) as e:
                logger.debug("runs/{}/run.json: unreadable test span {!r} ({}); not counted", summary.run_id, item, e)
                continue
            if instrument is None or ev.instrument == instrument:
                out.append(ev)
    return out


def earlier_span_runs(project_dir: str | os.PathLike[str] | None, *, instrument: str,
                      spans: Sequence[tuple[Any, Any]], run_id: str | None = None,
                      before: dt.datetime | None = None, stage: str | None = None) -> list[str]:
    """Return the runs that evaluated on a span overlapping one of ``spans`` of ``instrument``.

    Parameters
    ----------
    project_dir : str, os.PathLike or None
        Project directory; found from the cwd if None.
    instrument : str
        The instrument.
    spans : sequence of (start, end)
        Datetimes or ISO 8601 strings (naive means UTC), both ends included.
    run_id : str, optional
        A run not to count (the current one).
    before : datetime.datetime, optional
        Only runs started at or before this time (the current run's start).
    stage : str, optional
        Only runs of this stage (e.g. ``"agent"`` for the deflated Sharpe's trial registry).

    Returns
    -------
    list of str
        Distinct run ids, newest first.

    Raises
    ------
    ConfigError
        If a span's time is not ISO 8601.
    """
    wanted = [(_utc(a, "start"), _utc(b, "end")) for a, b in spans]
    out: list[str] = []
    for ev in span_evaluations(project_dir, instrument=instrument):
        if ev.run_id == run_id or ev.run_id in out or (stage and ev.stage != stage):
            continue
        if before is not None and ev.started_at is not None and ev.started_at > before:
            continue
        if any(ev.overlaps(instrument, a, b) for a, b in wanted):
            out.append(ev.run_id)
    return out


def record_test_spans(ctx: Any, spans: Sequence[tuple[Any, Any]], *, instrument: str,
                      what: str | Sequence[str]) -> int:
    """Record that this run evaluates on ``spans`` of ``instrument``; return how many earlier runs did too.

    The spans are added to the run's ``run.json`` (``test_spans``) before the count, so a run that
    fails later is still counted by the next ones. The count, ``test_span_evaluations``, is the
    number of earlier runs (any stage, any status) with an evaluation on an overlapping span of the
    same instrument; it goes to run.json ``metrics`` and ``results``, and when it is above 0 one
    WARNING line says that the span's result is in-sample for selection.

    Parameters
    ----------
    ctx : RunContext
        The running stage (typed Any here: ``_run`` imports the display, which imports back).
    spans : sequence of (start, end)
        Datetimes or ISO 8601 strings (naive means UTC): the data each evaluation scores, up to
        the last label's end time.
    instrument : str
        The instrument (the bars' ``symbol``, else the instrument folder of the data).
    what : str or sequence of str
        What is evaluated on each span (one text for all, or one per span).

    Returns
    -------
    int
        ``test_span_evaluations``.

    Raises
    ------
    ConfigError
        If a time is not ISO 8601, or ``what`` has another length than ``spans``.
    """
    labels = [what] * len(spans) if isinstance(what, str) else list(what)
    if len(labels) != len(spans):
        raise ConfigError(f"what: {len(labels)} labels for {len(spans)} spans; give one text or one per span")
    rec = read_run_record(ctx.run_dir, detect_dead=False) or {}
    mine = [item for item in rec.get(SPANS_FIELD) or [] if isinstance(item, dict)]
    for (a, b), label in zip(spans, labels, strict=True):
        item = {"stage": ctx.stage, "instrument": instrument, "start": _utc(a, "start").isoformat(),
                "end": _utc(b, "end").isoformat(), "what": label}
        if item not in mine:  # a resumed run records its span once
            mine.append(item)
    update_run_record(ctx.run_dir, **{SPANS_FIELD: mine})
    started = rec.get("started_at")
    earlier = earlier_span_runs(ctx.root, instrument=instrument, run_id=ctx.run_id,
                                spans=[(m["start"], m["end"]) for m in mine if m["instrument"] == instrument],
                                before=_utc(started, "started_at") if started else None)
    ctx.record_metrics(test_span_evaluations=len(earlier))
    ctx.set_result(test_span_evaluations=len(earlier), test_span_runs=earlier[:20])
    if earlier:
        logger.warning("This test span has been looked at {} times before: treat its result as in-sample for "
                       "selection ({} {} .. {}; earlier runs: {}{})", len(earlier), instrument, mine[0]["start"],
                       mine[-1]["end"], ", ".join(earlier[:3]), ", ..." if len(earlier) > 3 else "")
    return len(earlier)
