"""The one rule set of a valid bar, shared by the ETL (every reader) and the trader's guard.

Each rule has one verdict, the same in research and in live:

- ``reject``: the ETL leaves the bar out of the bars it writes (counted in the file's
  :class:`QualityReport`, logged with the file and line); the trader does not act on it
  (:class:`~quantnb.live.BadBarError`). Either way the series has a hole there, so the
  features restart after it (``gap_before`` in research, the feature feed's gap in live).
- ``flag``: the bar is kept and used; the ETL counts and logs it, the trader logs it.

No rule repairs a bar: a repaired price is an invented price, and whichever of open, high,
low or close is wrong cannot be told from the bar itself. The rules, in the order they are
tried (a bar gets the verdict of the first reject rule it breaks):

============================  =======  ==========================================================
rule                          verdict  why
============================  =======  ==========================================================
``price_not_finite``          reject   a NaN, infinite or missing open/high/low/close cannot be
                                       traded or turned into features
``price_not_positive``        reject   no venue trades at <= 0: a sentinel or a parse error
``volume_not_finite``         reject   a NaN or infinite volume means a corrupt row (a *missing*
                                       volume, null/None, is a source without volume, e.g. a
                                       book's mid bars, and no defect)
``volume_negative``           reject   traded volume is >= 0 by definition
``high_below_open_close``     reject   high < max(open, close): one of the four prices is wrong
                                       and nothing says which
``low_above_open_close``      reject   low > min(open, close): as above
``duplicate_minute``          reject   the minute of the last accepted bar again: the first
                                       print is the one a trader acted on, a copy cannot be
                                       traded twice
``out_of_order``              reject   earlier than the last accepted bar: live, the trader has
                                       already acted on later bars; research drops it too, so
                                       both see the same series
``volume_zero``               flag     volume 0 while the price moved (high > low): prices from
                                       quotes or a mark price, not trades; usable, but volume
                                       features see nothing. A flat zero-volume minute is a
                                       quiet market and is not flagged
``gap``                       flag     more than one bar interval since the last accepted bar:
                                       the bar is fine, the features restart before it
============================  =======  ==========================================================

:func:`check_bar` judges one bar (the trader's guard); :func:`judge_bars` judges a frame of
bars (the ETL). Both evaluate the same predicates (:data:`BAR_RULES`), written once over
operators that work on numbers and on polars expressions alike.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl
from loguru import logger

from quantnb.data._quality import LOG_LIMIT_PER_KIND, QualityReport

MINUTE_MS = 60_000
PRICE_FIELDS = ("open", "high", "low", "close")


class Verdict(enum.StrEnum):
    """What happens to a bar that breaks a rule (see the module docstring)."""

    REJECT = "reject"
    FLAG = "flag"


def bar_iso(open_time_ms: int) -> str:
    """Return a bar's open time as ISO 8601 UTC (seconds).

    Parameters
    ----------
    open_time_ms : int
        Open time, milliseconds since the Unix epoch (UTC).
    """
    return dt.datetime.fromtimestamp(open_time_ms / 1000, dt.UTC).isoformat(timespec="seconds")


class _Num:
    """The rules' operators on plain numbers (``None`` is a missing value)."""

    @staticmethod
    def bad(x: Any) -> bool:
        return x is None or isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x)

    max, min = staticmethod(max), staticmethod(min)
    any, all = staticmethod(lambda *xs: any(xs)), staticmethod(lambda *xs: all(xs))


class _Expr:
    """The same operators on polars expressions (a null comparison is false)."""

    @staticmethod
    def bad(x: pl.Expr) -> pl.Expr:
        return x.is_null() | ~x.is_finite()

    max, min = staticmethod(pl.max_horizontal), staticmethod(pl.min_horizontal)
    any = staticmethod(pl.any_horizontal)

    @staticmethod
    def all(*xs: pl.Expr) -> pl.Expr:
        return pl.all_horizontal([x.fill_null(False) for x in xs])


@dataclasses.dataclass(frozen=True)
class BarRule:
    """One rule of a valid bar."""

    name: str  # e.g. "high_below_open_close"
    verdict: Verdict
    counter: str  # the QualityReport counter the ETL counts it under
    fix: str  # what to do about it, for messages
    # broken(op, b): whether bar b (a mapping of ts, open, high, low, close, volume, prev, interval to numbers
    # or polars expressions) breaks the rule
    broken: Callable[[Any, Any], Any] = dataclasses.field(repr=False)
    # detail(b) -> (field, value, what), for the message of a broken bar (numbers)
    detail: Callable[[dict[str, Any]], tuple[str, Any, str]] = dataclasses.field(repr=False)


def _first(b: dict[str, Any], fields: Sequence[str], test: Callable[[Any], bool]) -> str:
    return next(f for f in fields if test(b[f]))


def _ohlc(b: dict[str, Any]) -> str:
    return f"open={b['open']!r}, high={b['high']!r}, low={b['low']!r}, close={b['close']!r}"


_SOURCE = "check the source: re-download the file or fix the row"
BAR_RULES: tuple[BarRule, ...] = (
    BarRule("price_not_finite", Verdict.REJECT, "nan_inf", _SOURCE,
            lambda op, b: op.any(*(op.bad(b[f]) for f in PRICE_FIELDS)),
            lambda b: (f := _first(b, PRICE_FIELDS, _Num.bad), b[f], "not a finite number (NaN, infinite or missing)")),
    BarRule("price_not_positive", Verdict.REJECT, "non_positive_price", _SOURCE,
            lambda op, b: op.any(*(b[f] <= 0 for f in PRICE_FIELDS)),
            lambda b: (f := _first(b, PRICE_FIELDS, lambda x: x <= 0), b[f], "price must be > 0")),
    BarRule("volume_not_finite", Verdict.REJECT, "nan_inf", _SOURCE,
            lambda op, b: op.all(b["has_volume"], op.bad(b["volume"])),
            lambda b: ("volume", b["volume"], "not a finite number (NaN or infinite)")),
    BarRule("volume_negative", Verdict.REJECT, "negative_size", _SOURCE,
            lambda op, b: op.all(b["has_volume"], b["volume"] < 0),
            lambda b: ("volume", b["volume"], "volume must be >= 0")),
    BarRule("high_below_open_close", Verdict.REJECT, "ohlc_inconsistent", _SOURCE,
            lambda op, b: b["high"] < op.max(b["open"], b["close"]),
            lambda b: ("high", b["high"], ("high below low" if b["high"] < b["low"] else "high below open or close")
                       + f" ({_ohlc(b)})")),
    BarRule("low_above_open_close", Verdict.REJECT, "ohlc_inconsistent", _SOURCE,
            lambda op, b: b["low"] > op.min(b["open"], b["close"]),
            lambda b: ("low", b["low"], f"low above open or close ({_ohlc(b)})")),
    BarRule("duplicate_minute", Verdict.REJECT, "duplicates", "the first bar of the minute is kept; remove the copies "
            "at the source", lambda op, b: op.all(b["has_prev"], b["ts"] == b["prev"]),
            lambda b: ("ts", bar_iso(b["ts"]), "the same minute as the bar before it")),
    BarRule("out_of_order", Verdict.REJECT, "out_of_order", "sort the bars by time at the source (a file: sort its "
            "rows by timestamp) and re-run", lambda op, b: op.all(b["has_prev"], b["ts"] < b["prev"]),
            lambda b: ("ts", bar_iso(b["ts"]), f"earlier than the bar already accepted at {bar_iso(b['prev'])}")),
    BarRule("volume_zero", Verdict.FLAG, "zero_volume", "volume features see no trade in it; check that the "
            "source reports traded volume",
            lambda op, b: op.all(b["has_volume"], b["volume"] == 0, b["high"] > b["low"]),
            lambda b: ("volume", b["volume"], f"zero volume while the price moved (high={b['high']!r} > "
                                              f"low={b['low']!r})")),
    BarRule("gap", Verdict.FLAG, "time_gaps", "the features restart after the hole",
            lambda op, b: op.all(b["has_prev"], b["ts"] - b["prev"] > b["interval"]),
            lambda b: ("ts", bar_iso(b["ts"]), f"{(b['ts'] - b['prev']) // b['interval'] - 1} missing bar(s) "
                                               f"since {bar_iso(b['prev'])}")),
)
RULES_BY_NAME = {r.name: r for r in BAR_RULES}
_SEQUENCE = ("duplicate_minute", "out_of_order", "gap")


@dataclasses.dataclass(frozen=True)
class BarFinding:
    """A rule a bar breaks: the rule, the bar, the field and its value.

    Attributes
    ----------
    rule : BarRule
        The broken rule (its ``verdict`` says what happens to the bar).
    ts_ms : int
        The bar's open time, epoch milliseconds UTC.
    field : str
        The field at fault (``close``, ``volume``, ``ts``...).
    value : Any
        Its value.
    what : str
        What is wrong with it.
    """

    rule: BarRule
    ts_ms: int
    field: str
    value: Any
    what: str

    @property
    def message(self) -> str:
        """``bar <ISO ts> field <field>=<value>: <what>; bar rejected|kept: <fix> [<rule>]``."""
        done = "bar rejected" if self.rule.verdict is Verdict.REJECT else "bar kept"
        return (f"bar {bar_iso(self.ts_ms)} field {self.field}={self.value!r}: {self.what}; {done}: "
                f"{self.rule.fix} [{self.rule.name}]")


def check_bar(ts_ms: int, open: Any, high: Any, low: Any, close: Any, volume: Any = None, *,
              prev_ms: int | None = None, interval_ms: int = MINUTE_MS) -> list[BarFinding]:
    """Judge one bar by :data:`BAR_RULES`; return the rules it breaks.

    Parameters
    ----------
    ts_ms : int
        The bar's open time, epoch milliseconds UTC.
    open, high, low, close : float
        Prices, quote currency per base unit.
    volume : float or None
        Volume; None when the source gives none (no rule then looks at it).
    prev_ms : int or None
        Open time of the last bar accepted before this one (None: the first bar), for the
        duplicate, out-of-order and gap rules.
    interval_ms : int, default 60_000
        Bar length, milliseconds.

    Returns
    -------
    list of BarFinding
        Empty for a clean bar; one ``reject`` finding (the first reject rule broken) for a
        rejected bar; else the ``flag`` findings.
    """
    b = _scalars(ts_ms, (open, high, low, close), volume, prev_ms, interval_ms)
    flags = []
    for rule in BAR_RULES:
        if rule.broken(_Num, b):
            finding = BarFinding(rule, ts_ms, *rule.detail(b))
            if rule.verdict is Verdict.REJECT:
                return [finding]
            flags.append(finding)
    return flags


def oldest_first(frame: pl.DataFrame, ts: str, path: Any) -> pl.DataFrame:
    """Return a file stored newest-first (every row no later than the one before) reversed, with an INFO line."""
    col = frame[ts]
    if frame.height > 1 and col.is_sorted(descending=True) and not col.is_sorted():
        logger.info("{}: rows are stored newest-first; read oldest-first", path)
        return frame.reverse()
    return frame


def judge_bars(frame: pl.DataFrame, report: QualityReport, *, ts: str = "ts", line: str | None = None,
               columns: Sequence[str] = (*PRICE_FIELDS, "volume"), sequence: bool = True,
               interval_ms: int = MINUTE_MS) -> pl.DataFrame:
    """Judge the bars of one file by :data:`BAR_RULES` in file order; return the accepted ones.

    Every broken rule is counted in ``report`` under the rule's counter; the first
    ``LOG_LIMIT_PER_KIND`` of each are logged with the file, the line (when ``line`` is
    given) and :attr:`BarFinding.message`, exactly as :func:`check_bar` words them.
    """
    if not frame.height:
        return frame
    ms = pl.col(ts).dt.epoch("ms") if isinstance(frame.schema[ts], pl.Datetime) else pl.col(ts)
    vol = pl.col(columns[4]) if len(columns) > 4 else pl.lit(None, pl.Float64)
    b: dict[str, Any] = {"ts": ms, **{f: pl.col(c) for f, c in zip(PRICE_FIELDS, columns, strict=False)},
                         "volume": vol, "has_volume": vol.is_not_null(), "interval": interval_ms}
    rules = [r for r in BAR_RULES if sequence or r.name not in _SEQUENCE]
    value_rules = [r for r in rules if r.verdict is Verdict.REJECT and r.name not in _SEQUENCE]
    judged = frame.with_columns(_ms=ms, _reject=_first_broken(value_rules, b))
    if sequence:  # the last accepted bar before each row: earlier rejects or copies never raise the running max
        prev = pl.when(pl.col("_reject").is_null()).then(pl.col("_ms")).shift(1).cum_max().forward_fill()
        judged = judged.with_columns(_prev=prev)
        b["prev"], b["has_prev"] = pl.col("_prev"), pl.col("_prev").is_not_null()
        seq = [RULES_BY_NAME["duplicate_minute"], RULES_BY_NAME["out_of_order"]]
        judged = judged.with_columns(_reject=pl.coalesce("_reject", _first_broken(seq, b)))
    flags = [r for r in rules if r.verdict is Verdict.FLAG]
    judged = judged.with_columns([pl.when(pl.col("_reject").is_null()).then(r.broken(_Expr, b)).otherwise(False)
                                  .fill_null(False).alias(f"_flag_{r.name}") for r in flags])
    for rule in rules:
        hit = pl.col("_reject") == rule.name if rule.verdict is Verdict.REJECT else pl.col(f"_flag_{rule.name}")
        _report(report, rule, judged.filter(hit), columns, line, interval_ms)
    keep = judged.filter(pl.col("_reject").is_null())
    return keep.drop([c for c in keep.columns if c not in frame.columns])


def _scalars(ts_ms: int, prices: Sequence[Any], volume: Any, prev_ms: int | None, interval_ms: int) -> dict[str, Any]:
    """Return the bar as the rules read it: a missing volume or previous bar reads as NaN / ts (compares false)."""
    return {"ts": ts_ms, **dict(zip(PRICE_FIELDS, prices, strict=True)), "interval": interval_ms,
            "volume": math.nan if volume is None else volume, "has_volume": volume is not None,
            "prev": ts_ms if prev_ms is None else prev_ms, "has_prev": prev_ms is not None}


def _first_broken(rules: Sequence[BarRule], b: dict[str, Any]) -> pl.Expr:
    expr: Any = pl
    for rule in rules:
        expr = expr.when(rule.broken(_Expr, b).fill_null(False)).then(pl.lit(rule.name))
    return expr.otherwise(pl.lit(None, pl.String))


def _report(report: QualityReport, rule: BarRule, rows: pl.DataFrame, columns: Sequence[str], line: str | None,
            interval_ms: int) -> None:
    """Count ``rows`` under the rule's counter; log the first ones with their line and the bar's finding."""
    if not rows.height:
        return
    for row in rows.head(LOG_LIMIT_PER_KIND).iter_rows(named=True):
        b = _scalars(row["_ms"], [row[c] for c in columns[:4]], row[columns[4]] if len(columns) > 4 else None,
                     row.get("_prev"), interval_ms)
        report.flag(rule.counter, row[line] if line else None, BarFinding(rule, row["_ms"], *rule.detail(b)).message)
    if rows.height > LOG_LIMIT_PER_KIND:
        report.flag(rule.counter, None, f"more bars break {rule.name} ({rule.verdict})",
                    count=rows.height - LOG_LIMIT_PER_KIND)


def data_columns(frame: pl.DataFrame) -> list[str]:
    """Return the columns of ``frame`` that hold data: the one rule for an empty column.

    A column holds data when one of its values is not null and, for a float column, is
    finite (a column of nulls, NaN or infinities only is empty: e.g. the book columns of
    bars from an OHLCV file). A frame without rows keeps every column.

    Parameters
    ----------
    frame : polars.DataFrame
        Any frame.
    """
    if not frame.height:
        return frame.columns
    has = frame.select([(pl.col(c).is_finite().any() if t.is_float() else pl.col(c).is_not_null().any()).alias(c)
                        for c, t in frame.schema.items()])
    return [c for c in frame.columns if has[c][0]]
