"""HTML summaries of stage results (``_repr_html_``): compact tables and the run's plots inline."""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["result_html", "table_html", "quality_html", "image_html", "figure_html", "learning_curves_html",
           "integer_ticks"]

_STYLE = (
    "<style>.qnb{font-family:var(--jp-ui-font-family,sans-serif);font-size:12px;max-width:100%}"
    ".qnb h4{margin:.2em 0 .3em;font-size:13px}.qnb .qnb-scroll{max-width:100%;overflow-x:auto}"
    ".qnb table{border-collapse:collapse;margin:.2em 0 .6em}.qnb td,.qnb th{padding:1px 8px;"
    "text-align:right;white-space:nowrap;border-bottom:1px solid var(--jp-border-color2,#ddd)}"
    ".qnb th{font-weight:600}.qnb td.l,.qnb th.l{text-align:left}.qnb .ok{color:#1a7f37}"
    ".qnb .bad{color:#cf222e;font-weight:600}.qnb .warn{color:#9a6700}.qnb .dim{color:#777}"
    ".qnb td.w{white-space:normal;word-break:break-word;min-width:240px}"
    ".qnb img{max-width:100%;height:auto;margin-right:6px}</style>"
)
_LEFT = " class='l'"
_STATUS_CLASS = {"completed": "ok", "completed_with_errors": "warn", "failed": "bad", "interrupted": "bad",
                 "running": "dim"}


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _cell(value: Any) -> tuple[str, bool]:
    """Return the formatted value and whether it is numeric (right-aligned)."""
    if value is None:
        return "", False
    if isinstance(value, bool):
        return str(value), False
    if isinstance(value, int):
        return f"{value:,}", True
    if isinstance(value, float):
        if math.isnan(value):
            return "nan", True
        a = abs(value)
        text = f"{value:,.0f}" if a >= 1e4 else f"{value:.4g}" if a >= 1e-3 or a == 0 else f"{value:.2e}"
        return text, True
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value), False
    return str(value), False


def table_html(rows: Any, *, max_rows: int = 30, columns: Iterable[str] | None = None) -> str:
    """Render rows (a polars/pandas frame, a list of dicts or one dict) as a compact HTML table."""
    if isinstance(rows, Mapping):
        body = "".join(f"<tr><th class='l'>{_esc(k)}</th><td class='l w'>{_esc(_cell(v)[0])}</td></tr>"
                       for k, v in rows.items())
        return f"<div class='qnb-scroll'><table>{body}</table></div>"
    if hasattr(rows, "to_dicts"):
        records = rows.to_dicts()
        cols = list(columns or rows.columns)
    elif hasattr(rows, "to_dict") and hasattr(rows, "columns"):
        records = rows.to_dict("records")
        cols = list(columns or rows.columns)
    else:
        records = list(rows)
        cols = list(columns or dict.fromkeys(k for r in records for k in r))
    if not records:
        return "<div class='dim'>(none)</div>"
    first = records[0]  # a text column's header sits over its left-aligned values
    head = "".join(f"<th{'' if _cell(first.get(c))[1] else _LEFT}>{_esc(c)}</th>" for c in cols)
    lines = []
    for r in records[:max_rows]:
        tds = []
        for c in cols:
            text, numeric = _cell(r.get(c))
            cls = "" if numeric else " class='l w'" if len(text) > 60 else " class='l'"
            tds.append(f"<td{cls}>{_esc(text)}</td>")
        lines.append("<tr>" + "".join(tds) + "</tr>")
    more = len(records) - max_rows
    if more > 0:
        lines.append(f"<tr><td class='l dim' colspan='{len(cols)}'>… {more} more row(s)</td></tr>")
    return f"<div class='qnb-scroll'><table><tr>{head}</tr>{''.join(lines)}</table></div>"


def image_html(path: str | Path | None, *, width_px: int | None = None) -> str:
    """Embed a PNG file (base64) so it shows inline and survives in the saved notebook; '' if absent."""
    if path is None or not Path(path).is_file():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    width = f" width='{width_px}'" if width_px else ""
    return f"<img src='data:image/png;base64,{data}'{width} alt='{_esc(Path(path).name)}'>"


def figure_html(fig: Any, *, width_px: int | None = None) -> str:
    """Embed a matplotlib figure as a PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    width = f" width='{width_px}'" if width_px else ""
    return f"<img src='data:image/png;base64,{data}'{width}>"


def integer_ticks(*axes: Any) -> None:
    """Put x ticks on whole numbers only (epochs, trials): no ``2.5`` epoch on the axis."""
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def learning_curves_html(history: Sequence[Mapping[str, Any]], *, title: str = "") -> str:
    """Plot loss (train, val) and F1 macro per epoch side by side; '' without history."""
    if not history:
        return ""
    from matplotlib.figure import Figure

    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    fig = Figure(figsize=(8.0, 2.6))
    ax1, ax2 = fig.subplots(1, 2)
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        ys = [h.get(key) for h in history]
        if any(y is not None for y in ys):
            ax1.plot(epochs, ys, marker="o", label=label)
    ax1.set(title="loss", xlabel="epoch")
    ax1.legend(fontsize=8)
    ax2.plot(epochs, [h.get("f1_macro") for h in history], marker="o", color="tab:green")
    best = [e for e, h in zip(epochs, history, strict=True) if h.get("is_best")]
    if best:
        ax2.axvline(best[-1], color="grey", linestyle=":", label=f"best epoch {best[-1]}")
        ax2.legend(fontsize=8)
    ax2.set(title="validation F1 macro", xlabel="epoch")
    integer_ticks(ax1, ax2)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return figure_html(fig)


def quality_html(quality: Mapping[str, Mapping[str, Any]]) -> str:
    """Render quality reports as one table: a row per file with defects, a column per non-zero counter."""
    try:
        from quantnb.data import COUNTERS

        counters = [c for c in COUNTERS if c != "stale_dropped"]
    except ImportError:  # pragma: no cover
        counters = sorted({k for q in quality.values() for k, v in q.items() if isinstance(v, int)})
    rows, clean = [], 0
    for path, q in quality.items():
        defects = {c: q.get(c) for c in counters if isinstance(q.get(c), int) and q.get(c)}
        if not defects:
            clean += 1
            continue
        rows.append({"file": Path(path).name, **defects})
    cols = ["file", *[c for c in counters if any(c in r for r in rows)]]
    text = f"<h4>Data quality: {len(rows)} file(s) with defects, {clean} clean</h4>"
    return text + (table_html(rows, columns=cols) if rows else "")


def _header(title: str, run_id: str | None, status: str | None) -> str:
    st = f" <span class='{_STATUS_CLASS.get(status or '', 'warn')}'>{_esc(status)}</span>" if status else ""
    rid = f" <code>{_esc(run_id)}</code>" if run_id else ""
    return f"<h4>{_esc(title)}{rid}{st}</h4>"


def _quarantine(quarantined: Mapping[str, str]) -> str:
    if not quarantined:
        return ""
    rows = [{"file": k, "reason": v.splitlines()[0][:160]} for k, v in quarantined.items()]
    return f"<h4 class='bad'>{len(rows)} file(s) quarantined</h4>" + table_html(rows)


def _etl(r: Any) -> str:
    import polars as pl

    out = r.outputs
    n, bars = out.height, int(out["rows"].sum()) if out.height else 0
    keys = [c for c in ("venue", "market", "symbol") if c in out.columns]  # one row per instrument
    by_symbol = out.group_by(keys).agg(
        days=pl.len(), first_day=pl.col("day").min(), last_day=pl.col("day").max(), bars=pl.col("rows").sum(),
        gaps=pl.col("gaps").sum(), size_kb=pl.col("size_kb").sum().round(1),
    ).sort(keys) if n else out
    return (_header("ETL", r.run_id, r.status)
            + f"<div>{n} Parquet file(s), {bars:,} bars, {len(r.quarantined)} quarantined</div>"
            + table_html(by_symbol) + _quarantine(r.quarantined) + quality_html(r.quality))


def _labelling(r: Any) -> str:
    return (_header("Labelling", r.run_id, r.status) + f"<div>→ <code>{_esc(r.output_dir)}</code></div>"
            + table_html(r.distribution) + _quarantine(r.quarantined))


def _optimization(r: Any) -> str:
    trials = r.trials
    best = ""
    if trials is not None and hasattr(trials, "sort") and "value" in getattr(trials, "columns", []):
        best = "<h4>Best trials</h4>" + table_html(trials.drop_nulls("value").sort("value", descending=True),
                                                   max_rows=5)
    n = getattr(trials, "height", None)
    return (_header("Optimization", r.run_id, None)
            + f"<div>study <code>{_esc(r.study_name)}</code>: {n if n is not None else '?'} trial(s); "
            f"best val F1 macro <b>{r.best_value:.4f}</b>; parameters in <code>{_esc(r.best_params_path)}</code></div>"
            + table_html(dict(r.best_params)) + best)


def _splits_line(span: Mapping[str, Any] | None) -> str:
    if not span:
        return ""
    parts = [f"{name} {_esc(_minute(s['start']))} → {_esc(_minute(s.get('end')))}"
             f" ({s.get('windows', s.get('rows', '?')):,} windows)" for name, s in span.items()
             if isinstance(s, Mapping) and s.get("start")]
    return f"<div>data (UTC): {'; '.join(parts)}</div>" if parts else ""


def _baselines_html(baselines: Mapping[str, Mapping[str, Any]]) -> str:
    """Each free baseline's F1 macro and the model's paired difference with its interval, then the verdicts."""
    if not baselines:
        return ""
    rows = [{"baseline": b.get("baseline", name), "baseline F1 macro": b.get("f1_macro"),
             f"model − baseline [{100 * b.get('level', 0.95):.0f}% CI]":
             f"{b['model_minus_baseline']:+.3f} [{b['diff_ci_low']:+.3f}, {b['diff_ci_high']:+.3f}]"}
            for name, b in baselines.items() if "model_minus_baseline" in b]
    return ("<h4>Against free baselines (test split, paired block bootstrap)</h4>" + table_html(rows)
            + "".join(f"<div class='dim'>{_esc(b['verdict'])}</div>" for b in baselines.values() if "verdict" in b))


def _meta_html(meta: Mapping[str, Any] | None) -> str:
    """Meta-labels: the secondary's precision against always taking the primary's side, sized against unsized bets."""
    if not meta:
        return ""
    p, z = meta.get("take_all") or {}, meta.get("sizing") or {}

    def bps(v: Any) -> str:
        return "–" if v is None else f"{1e4 * v:+.2f} bps"

    rows = [{"": "always take the primary's side", "precision on TAKE": p.get("baseline_precision"),
             "net return per trade": bps(z.get("unsized_return_per_trade")), "hit rate": z.get("unsized_hit_rate")},
            {"": "secondary model (sized by its probability)", "precision on TAKE": p.get("precision"),
             "net return per trade": bps(z.get("sized_return_per_trade")), "hit rate": z.get("sized_hit_rate")}]
    return ("<h4>Meta-labelling (test split, paired block bootstrap)</h4>" + table_html(rows)
            + "".join(f"<div class='dim'>{_esc(v)}</div>" for v in meta.get("verdicts", [])))


def _training(r: Any) -> str:
    t = r.test
    keys = ["f1_macro", "f1_weighted", "f1_sell", "f1_neutral", "f1_buy", "f1_skip", "f1_take", "accuracy"]
    metrics = {k: t[k] for k in keys if k in t}
    history = [{k: v for k, v in h.items() if k != "f1_per_class"} for h in r.history]
    return (_header("Training", r.run_id, None)
            + f"<div>best val F1 macro <b>{r.best_val_f1_macro:.4f}</b>; test F1 macro <b>{t.get('f1_macro', 0):.4f}"
            f"</b>; bundle <code>{_esc(r.bundle_dir)}</code></div>"
            + _splits_line(getattr(r, "data_span", None))
            + table_html(metrics) + _baselines_html(t.get("baselines") or {}) + _meta_html(t.get("meta"))
            + "<div style='display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start'>"
            + learning_curves_html(history) + image_html(r.confusion_plot) + "</div>")


_CI_OF = {"sharpe": "sharpe_annualised", "return": "total_return_frac"}  # <p>_ci_low/high -> the figure they bound


def _metrics_with_intervals(table: Any) -> list[dict[str, Any]]:
    """Metric rows with each ``<p>_ci_low``/``_ci_high`` pair shown as ``value [low, high]`` beside its figure."""
    rows = {r["metric"]: r for r in table.to_dicts()}
    cols = [c for c in table.columns if c != "metric"]
    out = []
    for name, row in rows.items():
        if name.endswith(("_ci_low", "_ci_high")):
            continue
        prefix = next((p for p, fig in _CI_OF.items() if fig == name), name)
        lo, hi = rows.get(f"{prefix}_ci_low"), rows.get(f"{prefix}_ci_high")
        shown: dict[str, Any] = {"metric": f"{name} [95% CI]" if lo and hi else name}
        for c in cols:
            v = row.get(c)
            text = "n/a" if v is None else f"{v:.2f}" if name in ("psr", "dsr") else _cell(v)[0]
            if lo and hi and lo.get(c) is not None and hi.get(c) is not None:
                text += f" [{_cell(lo[c])[0]}, {_cell(hi[c])[0]}]"
            shown[c] = text
        out.append(shown)
    return out


def _minute(t: Any) -> str:
    """``2022-01-02T11:00:00+00:00`` -> ``2022-01-02 11:00``."""
    return str(t)[:16].replace("T", " ")


def _span_line(r: Any) -> str:
    span, m = getattr(r, "data_span", None) or {}, getattr(r, "metrics", None) or {}
    ev, tr = span.get("eval") or [None, None], span.get("train") or [None, None]
    if not ev[0]:
        return ""
    import datetime as _dt

    day = _minute
    try:
        days = (_dt.datetime.fromisoformat(str(ev[1])) - _dt.datetime.fromisoformat(str(ev[0]))).total_seconds() / 86400
        length = f" ({days:.1f} days)"
    except (TypeError, ValueError):
        length = ""
    trials = f"; {m['n_trials']} trial(s) on this span (the DSR deflates for them)" if m.get("n_trials") else ""
    return (f"<div>evaluated on <b>{_esc(day(ev[0]))} → {_esc(day(ev[1]))} UTC</b>{length}; trained on "
            f"{_esc(day(tr[0]))} → {_esc(day(tr[1]))}{trials}</div>")


def _agent(r: Any) -> str:
    return (_header("Agent", r.train_id, None) + f"<div>bundle <code>{_esc(r.bundle_dir)}</code> "
            f"(live: <code>train_id={_esc(r.train_id)}</code>)</div>" + _span_line(r)
            + "".join(f"<div>{_esc(v)}</div>" for v in getattr(r, "verdicts", []))
            + table_html(_metrics_with_intervals(r.table) if "metric" in r.table.columns else r.table)
            + "".join(f"<details><summary>{name}</summary>{table_html(t)}</details>"
                      for name, t in (("walk-forward folds", getattr(r, "folds", None)),
                                      ("across seeds", getattr(r, "seeds", None))) if t is not None)
            + (image_html(r.tear_sheet) + "<details><summary>equity and position</summary>"
               + image_html(r.equity_plot) + "</details>" if getattr(r, "tear_sheet", None) else
               image_html(r.equity_plot)))


def _live(r: Any) -> str:
    s = r.stats
    flat = {k: v for k, v in s.to_dict().items() if not isinstance(v, dict | list)}
    main = ["steps", "trades", "pnl_usd", "fees_usd", "max_drawdown_frac", "stopped_by", "registro_path"]
    shown = {k: flat[k] for k in main if k in flat}
    emergency = (f"<div class='bad'>EMERGENCY: {_esc(s.emergency.cause)} → {_esc(s.emergencias_path)}</div>"
                 if getattr(s, "emergency", None) is not None else "")
    return (_header("Live session", r.run_id, None) + emergency + table_html(shown)
            + f"<details><summary>all statistics</summary>{table_html(flat)}</details>"
            + f"<div class='dim'>production log <code>{_esc(r.production_log)}</code></div>")


def _postmortem(r: Any) -> str:
    rep = r.report
    d = rep.to_dict() if hasattr(rep, "to_dict") else {}
    scalars = {k: v for k, v in d.items() if not isinstance(v, dict | list) and v is not None}
    errors = "".join(f"<div class='bad'><code>{_esc(e)}</code></div>" for e in (d.get("last_errors") or [])[-5:])
    figures = "".join(f"<div>{figure_html(f)}</div>" for f in (r.figures or []))  # full size: readable text
    return (_header("Post-mortem", d.get("run_id"), d.get("status")) + table_html(scalars)
            + errors + f"<div>{figures}</div>")


def _record(r: Any) -> str:
    import contextlib
    import io as _io

    buf = _io.StringIO()
    with contextlib.redirect_stdout(buf):  # the sentences RecordResult.summary() prints, and its table
        per_symbol = r.summary()
    lines = "".join(f"<div>{_esc(line)}</div>" for line in buf.getvalue().splitlines()[1:] if line.strip())
    first = buf.getvalue().splitlines()[0] if buf.getvalue() else ""
    head = first.split(": ", 1)[1] if ": " in first else first
    return (_header("Record", r.run_id, r.status) + f"<div>{_esc(head)}</div>" + lines
            + "<h4>Per symbol</h4>" + table_html(per_symbol))


def _download(r: Any) -> str:
    counts = dict(r.files.group_by("status").len().iter_rows()) if r.files.height else {}
    order = ["downloaded", "skipped", "missing", "corrupt", "failed", "not_done"]
    said = ", ".join(f"{counts[s]} {s.replace('_', ' ')}" for s in order if counts.get(s))
    rate = r.bytes_total / 1e6 / max(r.elapsed_s, 1e-9)
    missing = [{"file": p.rsplit("/", 1)[-1], "archive path": p} for p in r.missing]
    bad = [{"file": x["path"].rsplit("/", 1)[-1], "status": x["status"],
            "reason": (x["reason"] or "").splitlines()[0].split("; quarantined")[0][:200]}
           for x in r.files.filter(r.files["status"].is_in(["corrupt", "failed"])).iter_rows(named=True)]
    quarantine = getattr(r, "quarantine_dir", None)
    ok = counts.get("downloaded", 0) + counts.get("skipped", 0)
    return (_header("Download", r.run_id, r.status)
            + f"<div>{len(r.files)} file(s) planned: {_esc(said)}; {r.bytes_total / 1e6:.1f} MB in "
            f"{r.elapsed_s:.1f} s ({rate:.1f} MB/s)</div>"
            + f"<div>{ok} verified file(s) in <code>{_esc(r.output_dir)}</code></div>"
            + (f"<h4 class='warn'>{len(missing)} not published by the venue (404): a later run with "
               f"<code>resume = True</code> asks again</h4>" + table_html(missing) if missing else "")
            + (f"<h4 class='bad'>{len(bad)} file(s) not usable</h4>" + table_html(bad)
               + (f"<div>quarantined under <code>{_esc(quarantine)}</code>; rerun with <code>resume = True</code> "
                  "to fetch them again</div>" if quarantine else "") if bad else "")
            + (f"<div>next: <code>quantnb run etl -p input_globs '[{_esc(r.output_dir)}/**/*.zip, "
               f"{_esc(r.output_dir)}/**/*.gz]'</code> "
               "or <code>notebooks/etl.ipynb</code></div>" if ok else ""))


_RENDERERS = {"DownloadResult": _download, "RecordResult": _record, "EtlResult": _etl, "LabellingResult": _labelling,
              "OptimizationResult": _optimization, "TrainingResult": _training, "AgentResult": _agent,
              "LiveResult": _live, "PostmortemResult": _postmortem}


def result_html(result: Any) -> str:
    """Return the self-contained HTML summary of a stage result (the body of its ``_repr_html_``)."""
    render = _RENDERERS.get(type(result).__name__)
    body = render(result) if render else f"<pre>{_esc(repr(result))}</pre>"
    kind = type(result).__name__.removesuffix("Result").lower()
    return f"{_STYLE}<div class='qnb qnb-{kind}'>{body}</div>"


class HtmlResult:
    """Base of the stage results: a notebook shows one as :func:`result_html` renders it."""

    def _repr_html_(self) -> str:  # noqa: D105
        return result_html(self)
