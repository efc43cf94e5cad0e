from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from quantnb.errors import ConfigError
from quantnb.features import (
    AGENT_FEATURES,
    RESEARCH_FEATURES,
    FeatureStream,
    compute_batch,
    segment_start_expr,
)
from quantnb.features._spec import GAP_THRESHOLD, REGISTRY
from tests.features._month import GAP_ROWS, month_with_book, with_gaps

WARMUP = 120
ALL = list(REGISTRY)


def _stream_rows(bars: pl.DataFrame, names: list[str]) -> np.ndarray:
    out = np.full((bars.height, len(names)), np.nan)
    streams = [FeatureStream([n], warmup_bars=WARMUP) for n in names]
    for i, bar in enumerate(bars.iter_rows(named=True)):
        for j, s in enumerate(streams):
            r = s.update(bar)
            if r is not None:
                out[i, j] = r[0]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("gaps", [False, True], ids=["month", "month-with-gaps"])
def test_batch_equals_incremental_for_every_registered_feature_on_the_real_month(gaps):
    bars = month_with_book()
    bars = with_gaps(bars) if gaps else bars
    assert set(RESEARCH_FEATURES) | set(AGENT_FEATURES) <= set(ALL)
    batch = compute_batch(bars, ALL, warmup_bars=WARMUP).select(ALL).to_numpy()
    inc = _stream_rows(bars, ALL)
    for j, name in enumerate(ALL):
        np.testing.assert_array_equal(np.isnan(inc[:, j]), np.isnan(batch[:, j]), err_msg=f"{name}: null pattern")
        ok = ~np.isnan(batch[:, j])
        assert ok.sum() > bars.height * 0.9, name
        np.testing.assert_allclose(inc[ok, j], batch[ok, j], rtol=0, atol=1e-9, err_msg=name)


def test_a_gap_restarts_every_feature_for_its_warm_up():
    bars = with_gaps(month_with_book().head(31_000))
    feats = compute_batch(bars, ALL, warmup_bars=WARMUP)
    starts = bars.select(segment_start_expr(bars.columns)).to_series().to_numpy()
    first_after = [int(i) for i in np.flatnonzero(starts)[1:]]
    assert len(first_after) == len(GAP_ROWS)
    for i in first_after:
        row = feats.row(i, named=True)
        for name, spec in REGISTRY.items():
            warm = max(spec.warmup_bars, WARMUP) if spec.recursive else spec.warmup_bars
            if warm > 1:
                assert row[name] is None, (name, i)
                assert feats[name][i + warm - 2] is None and feats[name][i + warm - 1] is not None, name
    # a one-minute step is no gap; two minutes is
    assert GAP_THRESHOLD == dt.timedelta(minutes=2)
    assert not starts[1 : first_after[0]].any()


@pytest.mark.parametrize("k", [1, 7, 61])
def test_no_feature_depends_on_bars_after_it(k):
    bars = month_with_book().head(2_000)
    t = 1_500
    src = [c for c in bars.columns if c != "ts"]
    shocked = bars.with_columns([
        pl.when(pl.int_range(pl.len()) == t + k).then(pl.col(c) * 1.7).otherwise(pl.col(c)).alias(c) for c in src])
    a = compute_batch(bars, ALL, warmup_bars=WARMUP).select(ALL)
    b = compute_batch(shocked, ALL, warmup_bars=WARMUP).select(ALL)
    assert a.head(t + 1).equals(b.head(t + 1))
    assert a["ret_1"][t + k] != b["ret_1"][t + k]  # the shock is visible where it happens


def test_unknown_features_and_renamed_spread_are_refused_clearly():
    bars = month_with_book().head(100)
    with pytest.raises(ConfigError, match="spread_bps_mean' is now the feature 'spread_bps'"):
        compute_batch(bars, ["spread_bps_mean"])
    with pytest.raises(ConfigError, match="warmup_bars"):
        FeatureStream(["rsi_14"], warmup_bars=10)


def test_reconciled_definitions():
    bars = month_with_book().head(50)
    f = compute_batch(bars, ["log_depth_10", "spread_bps"]).row(11, named=True)
    src = bars.row(11, named=True)
    assert f["log_depth_10"] == pytest.approx(np.log1p(src["bid_depth_10"] + src["ask_depth_10"]), abs=1e-15)
    assert f["spread_bps"] == src["spread_bps_mean"]
