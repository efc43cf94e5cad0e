from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import polars as pl
from loguru import logger

from quantnb.classifier._bars import _MINUTE_US, check_bars
from quantnb.classifier._meta import meta_labels, momentum_side, side_from_column
from quantnb.errors import ConfigError

SELL, NEUTRAL, BUY = 0, 1, 2
LABEL_NAMES: tuple[str, str, str] = ("SELL", "NEUTRAL", "BUY")
_SHORT_NAMES = {"SELL": "SELL", "NEUTRAL": "NEU", "BUY": "BUY"}
# Absolute tolerance on the threshold comparisons: a move that is exactly at a threshold in
# decimal (100 -> 100.8 for +0.8 %) must count as reaching it despite binary rounding.
THRESHOLD_TOL = 1e-12


def _check_params(lookahead_min: object, threshold_short_frac: object, threshold_long_frac: object) -> None:
    if isinstance(lookahead_min, bool) or not isinstance(lookahead_min, numbers.Integral) or lookahead_min < 1:
        raise ConfigError(f"lookahead_min: got {lookahead_min!r}; give a whole number of minutes >= 1, e.g. 60")
    for name, value, sign in (("threshold_short_frac", threshold_short_frac, -1),
                              ("threshold_long_frac", threshold_long_frac, 1)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
            raise ConfigError(f"{name}: got {value!r}; give a finite fraction, e.g. {sign * 0.004}")
        if sign * float(value) <= 0 or abs(float(value)) >= 1:
            side = "negative (a fall, e.g. -0.004 for -0.4 %)" if sign < 0 else "positive (a rise, e.g. 0.008)"
            raise ConfigError(f"{name}: got {value!r}; it must be {side} and of magnitude below 1")


def label_bars(
    df: pl.DataFrame,
    lookahead_min: int,
    threshold_short_frac: float,
    threshold_long_frac: float,
    price_col: str = "close",
) -> pl.DataFrame:
    """Label each bar SELL, NEUTRAL or BUY from its forward return over ``lookahead_min`` minutes.

    The forward return of the bar at minute ``t`` is ``p[t + lookahead] / p[t] - 1`` with ``p`` the
    ``price_col`` column. The label is BUY (2) if it is at least ``threshold_long_frac``, SELL (0) if
    it is at most ``threshold_short_frac``, else NEUTRAL (1); both comparisons include the
    threshold (within an absolute tolerance of ``THRESHOLD_TOL`` = 1e-12 for binary rounding).

    A bar without a complete future window is dropped, never labelled from a partial future:
    the bar ``lookahead_min`` rows later must be exactly ``lookahead_min`` minutes later (so no
    minute inside the window is missing), no bar in ``(t, t + lookahead]`` may carry
    ``gap_before == True``, and both prices must be finite and positive. The last
    ``lookahead_min`` bars of the data and of every contiguous segment before a gap are therefore
    excluded.

    Parameters
    ----------
    df : polars.DataFrame
        1-minute bars: ``ts`` (Datetime, minute start, strictly increasing) and ``price_col``;
        optionally ``gap_before`` (Boolean). Other columns are carried through.
    lookahead_min : int
        Forward window, minutes, >= 1.
    threshold_short_frac : float
        SELL threshold as a fraction, < 0 (-0.004 is -0.4 %).
    threshold_long_frac : float
        BUY threshold as a fraction, > 0.
    price_col : str
        Price column, e.g. ``close`` or ``micro_price_close``.

    Returns
    -------
    polars.DataFrame
        The labelled bars, in input order: the input columns plus ``fwd_return`` (Float64,
        fraction) and ``label`` (Int8: 0 SELL, 1 NEUTRAL, 2 BUY). Empty input gives an empty frame
        with those columns.

    Raises
    ------
    ConfigError
        If a parameter is out of range (the message names the field) or ``price_col`` is absent.
    DataError
        If ``ts`` is missing, not a Datetime, off the minute grid, null, unsorted or duplicated.
    """
    _check_params(lookahead_min, threshold_short_frac, threshold_long_frac)
    if price_col not in df.columns:
        raise ConfigError(f"price_col: column {price_col!r} is not in the bars (columns: {df.columns})")
    check_bars(df)
    n_ahead = int(lookahead_min)
    price = pl.col(price_col).cast(pl.Float64)
    epoch = pl.col("ts").dt.epoch("us")
    complete = (epoch.shift(-n_ahead) - epoch) == n_ahead * _MINUTE_US
    if "gap_before" in df.columns:
        flags = pl.col("gap_before").fill_null(False).cast(pl.UInt32).cum_sum()
        complete = complete & (flags.shift(-n_ahead) == flags)
    fwd = (price.shift(-n_ahead) / price - 1.0).alias("fwd_return")
    label = (
        pl.when(pl.col("fwd_return") >= float(threshold_long_frac) - THRESHOLD_TOL).then(pl.lit(BUY, pl.Int8))
        .when(pl.col("fwd_return") <= float(threshold_short_frac) + THRESHOLD_TOL).then(pl.lit(SELL, pl.Int8))
        .otherwise(pl.lit(NEUTRAL, pl.Int8))
        .alias("label")
    )
    valid = complete.fill_null(False) & (price > 0) & (price.shift(-n_ahead) > 0) & pl.col("fwd_return").is_finite()
    out = df.lazy().with_columns(fwd).filter(valid).with_columns(label).collect()
    logger.debug("labelling: {} bars -> {} labelled, {} without a complete {}-minute future window dropped",
                 df.height, out.height, df.height - out.height, n_ahead)
    return out


def _frac_digits(frac: float) -> str:
    permille = (Decimal(repr(abs(float(frac)))) * 1000).normalize()
    whole, _, decimals = f"{permille:f}".partition(".")
    return f"{int(whole):04d}" + (f"p{decimals}" if decimals else "")


def _lookahead_text(lookahead_min: int) -> str:
    if lookahead_min % 1440 == 0:
        return f"{lookahead_min // 1440}d"
    if lookahead_min % 60 == 0:
        return f"{lookahead_min // 60}h"
    return f"{lookahead_min}m"


def label_suffix(lookahead_min: int, threshold_short_frac: float, threshold_long_frac: float) -> str:
    """Return the readable, collision-free name of a labelling configuration.

    Each threshold is written as its magnitude in per mille (units of 0.1 %), the integer part
    zero-padded to 4 digits; a finer threshold appends its remaining decimals after ``p``, so
    distinct thresholds always give distinct suffixes: 0.004 -> ``0004``, 0.0125 -> ``0012p5``,
    0.1 -> ``0100``. The lookahead is written in the largest whole unit: ``1d``, ``4h``, ``90m``.

    Parameters
    ----------
    lookahead_min : int
        Forward window, minutes, >= 1.
    threshold_short_frac, threshold_long_frac : float
        SELL (< 0) and BUY (> 0) thresholds as fractions.

    Returns
    -------
    str
        E.g. ``SELL_0004_BUY_0008_1h`` for (60, -0.004, 0.008).

    Raises
    ------
    ConfigError
        If a parameter is out of range (the message names the field).
    """
    _check_params(lookahead_min, threshold_short_frac, threshold_long_frac)
    return (f"SELL_{_frac_digits(threshold_short_frac)}_BUY_{_frac_digits(threshold_long_frac)}_"
            f"{_lookahead_text(int(lookahead_min))}")


def label_counts(df: pl.DataFrame) -> dict[str, int]:
    """Count the labels of a labelled frame.

    Parameters
    ----------
    df : polars.DataFrame
        Output of :func:`label_bars` (column ``label``, Int8 0/1/2).

    Returns
    -------
    dict of str to int
        ``{"SELL": n, "NEUTRAL": n, "BUY": n}``.

    Raises
    ------
    ConfigError
        If ``df`` has no ``label`` column.
    """
    if "label" not in df.columns:
        raise ConfigError(f"df: no 'label' column (columns: {df.columns}); label the bars with label_bars first")
    counts = df.get_column("label").value_counts()
    found = dict(zip(counts["label"].to_list(), counts["count"].to_list(), strict=True))
    return {name: int(found.get(code, 0)) for code, name in enumerate(LABEL_NAMES)}


def label_distribution(data: pl.DataFrame | Mapping[str, int]) -> dict[str, float]:
    """Return the fraction of SELL, NEUTRAL and BUY labels.

    Parameters
    ----------
    data : polars.DataFrame or mapping of str to int
        A labelled frame, or counts as returned by :func:`label_counts` (sum them to get the
        distribution over several files).

    Returns
    -------
    dict of str to float
        ``{"SELL": f, "NEUTRAL": f, "BUY": f}``, fractions summing to 1; all 0.0 for no rows.

    Raises
    ------
    ConfigError
        If a frame has no ``label`` column.
    """
    counts = label_counts(data) if isinstance(data, pl.DataFrame) else {k: int(data.get(k, 0)) for k in LABEL_NAMES}
    total = sum(counts.values())
    return {k: (counts[k] / total if total else 0.0) for k in LABEL_NAMES}


def format_distribution(distribution: Mapping[str, float]) -> str:
    """Format a label distribution as ``SELL: 12.3% | NEU: 74.1% | BUY: 13.6%``.

    Parameters
    ----------
    distribution : mapping of str to float
        Fractions keyed ``SELL``, ``NEUTRAL``, ``BUY``, as from :func:`label_distribution`.

    Returns
    -------
    str
        One line, percentages with one decimal.
    """
    return " | ".join(f"{_SHORT_NAMES[k]}: {100.0 * float(distribution.get(k, 0.0)):.1f}%" for k in LABEL_NAMES)


def label_events(df: pl.DataFrame, method: str = "fixed_horizon", *, lookahead_min: int = 60,
                 threshold_short_frac: float = -0.004, threshold_long_frac: float = 0.008,
                 max_holding_min: int = 60, profit_take_mult: float = 1.0, stop_loss_mult: float = 1.0,
                 vol_span_min: int = 60, cusum_threshold: float | None = None,
                 price_col: str = "close", side_rule: str = "momentum", momentum_min: int = 60,
                 side_col: str = "side", meta_cost_bps: float = 0.0, keep_unlabelled: bool = False) -> pl.DataFrame:
    """Label bars by ``method`` and add each label's end ``t1``, ``uniqueness`` and ``return_weight``.

    ``fixed_horizon`` is :func:`label_bars` (its columns and values unchanged) with
    ``t1 = ts + lookahead_min``; ``triple_barrier`` is
    :func:`quantnb.classifier._afml.triple_barrier_labels` (adds ``barrier`` and ``vol_frac``); ``meta`` is
    :func:`quantnb.classifier._meta.meta_labels` on the primary side of ``side_rule`` (labels 0 SKIP / 1 TAKE;
    adds ``side``, ``trade_return``, ``barrier``, ``vol_frac``). With
    ``cusum_threshold`` only the bars picked by :func:`quantnb.classifier._afml.cusum_events` are
    labelled. Uniqueness and return weights come from
    :func:`quantnb.classifier._afml.sample_weights` (AFML sections 4.3-4.6), computed over the labels
    of ``df``.

    Parameters
    ----------
    df : polars.DataFrame
        1-minute bars: ``ts``, ``price_col``, optional ``gap_before``.
    method : {"fixed_horizon", "triple_barrier", "meta"}
        Labelling method.
    lookahead_min, threshold_short_frac, threshold_long_frac : int, float, float
        Fixed-horizon parameters (see :func:`label_bars`).
    max_holding_min, profit_take_mult, stop_loss_mult, vol_span_min : int, float, float, int
        Triple-barrier parameters (see :func:`quantnb.classifier._afml.triple_barrier_labels`).
    cusum_threshold : float, optional
        CUSUM filter threshold on cumulative log returns, > 0; default label every bar.
    price_col : str
        Price column.
    side_rule : {"momentum", "column"}
        meta: the primary side, :func:`quantnb.classifier._meta.momentum_side` over ``momentum_min`` minutes
        or the bars' column ``side_col`` (-1, 0, +1).
    momentum_min : int
        meta: momentum look-back, minutes.
    side_col : str
        meta: the side column when ``side_rule="column"``.
    meta_cost_bps : float
        meta: round-trip cost a TAKE label must exceed, bps.
    keep_unlabelled : bool
        meta: return every bar of ``df`` with its ``side`` (0: no bet) and null label columns where
        there is no label, so that windows of bars can end at sparse bets; default only labelled bars.

    Returns
    -------
    polars.DataFrame
        The labelled bars with ``fwd_return``, ``label``, ``t1`` (UTC Datetime like ``ts``),
        ``uniqueness`` and ``return_weight`` (Float64).

    Raises
    ------
    ConfigError
        If ``method`` is unknown or a parameter is out of range (the message names it).
    DataError
        If ``ts`` is invalid.
    """
    from quantnb.classifier._afml import cusum_events, fixed_horizon_t1, sample_weights, triple_barrier_labels

    if method not in ("fixed_horizon", "triple_barrier", "meta"):
        raise ConfigError(f"method: got {method!r}; give 'fixed_horizon', 'triple_barrier' or 'meta'")
    events = None if cusum_threshold is None else cusum_events(df, cusum_threshold, price_col)
    if method == "meta":
        if side_rule not in ("momentum", "column"):
            raise ConfigError(f"side_rule: got {side_rule!r}; give 'momentum' or 'column'")
        side = momentum_side(df, momentum_min, price_col) if side_rule == "momentum" else side_from_column(df, side_col)
        out = meta_labels(df, side, max_holding_min, profit_take_mult, stop_loss_mult, vol_span_min, meta_cost_bps,
                          price_col, events)
        out = sample_weights(out, df, price_col)
        if not keep_unlabelled:
            return out
        added = [c for c in out.columns if c not in df.columns and c != "side"]
        return df.with_columns(side=pl.Series(side, dtype=pl.Int8)).join(out.select("ts", *added), on="ts",
                                                                          how="left", maintain_order="left")
    if method == "triple_barrier":
        out = triple_barrier_labels(df, max_holding_min, profit_take_mult, stop_loss_mult, vol_span_min,
                                    price_col, events)
    else:
        out = label_bars(df, lookahead_min, threshold_short_frac, threshold_long_frac, price_col)
        if events is not None:
            out = out.filter(pl.col("ts").is_in(df.filter(pl.Series(events)).get_column("ts").implode()))
        out = fixed_horizon_t1(out, lookahead_min)
    return sample_weights(out, df, price_col)


def labelling_suffix(p: dict[str, Any]) -> str:
    """Return the output folder name of a labelling configuration (a dict of :class:`LabellingParams` fields).

    Parameters
    ----------
    p : dict
        ``method``, the method's fields and ``cusum_threshold``.

    Returns
    -------
    str
        ``SELL_0004_BUY_0008_1h`` (fixed horizon, unchanged), ``TB_PT1_SL1p5_VOL1h_1h`` or
        ``META_MOM1h_PT1_SL1_VOL1h_1h`` (``META_COLside_...`` for a side column, ``_COST11`` for 11 bps);
        ``_CUSUM0005`` is appended when the CUSUM filter is on (threshold in per mille).
    """
    def mult(v: float) -> str:
        return repr(float(v)).removesuffix(".0").replace(".", "p")

    barriers = (f"PT{mult(p.get('profit_take_mult', 1.0))}_SL{mult(p.get('stop_loss_mult', 1.0))}_"
                f"VOL{_lookahead_text(p.get('vol_span_min', 60))}_{_lookahead_text(p.get('max_holding_min', 60))}")
    if p.get("method", "fixed_horizon") == "triple_barrier":
        base = f"TB_{barriers}"
    elif p.get("method") == "meta":
        side = (f"MOM{_lookahead_text(p['momentum_min'])}" if p.get("side_rule", "momentum") == "momentum"
                else f"COL{p['side_col']}")
        base = f"META_{side}_{barriers}" + (f"_COST{mult(p['meta_cost_bps'])}" if p.get("meta_cost_bps") else "")
    else:
        base = label_suffix(p["lookahead_min"], p["threshold_short_frac"], p["threshold_long_frac"])
    return base + (f"_CUSUM{_frac_digits(p['cusum_threshold'])}" if p.get("cusum_threshold") else "")
