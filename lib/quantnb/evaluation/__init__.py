"""Evaluation statistics: Sharpe inference, bootstrap intervals, nulls, PBO, purged splits.

One owner for every figure of uncertainty the stages report: the per-bar and daily Sharpe,
a stationary block bootstrap CI, the probabilistic and deflated Sharpe ratios, the minimum
track-record length, free classification baselines (persistence, majority class) with a paired
bootstrap of F1 macro, a cost-matched shift null of a position series' timing, the probability
of backtest overfitting (CSCV) and purged, embargoed k-fold, combinatorial (CPCV) and walk-forward
splits. numpy and
the standard library only (no scipy).
"""

from __future__ import annotations

from quantnb.evaluation._baselines import (
    compare_to_baseline,
    persistence_predictions,
)
from quantnb.evaluation._bootstrap import stationary_bootstrap_indices
from quantnb.evaluation._cpcv import cpcv_path_count, cpcv_paths, cpcv_split_count, cpcv_splits
from quantnb.evaluation._nulls import ShiftNull, shift_null, shift_null_samples
from quantnb.evaluation._pbo import pbo_cscv
from quantnb.evaluation._report import SharpeReport, mean_ci, sharpe_report
from quantnb.evaluation._sharpe import (
    deflated_sharpe_ratio,
    return_moments,
    sharpe_std_error,
)
from quantnb.evaluation._splits import purged_kfold_splits, walk_forward_splits

__all__ = [ "cpcv_path_count", "cpcv_paths", "cpcv_split_count",
    "cpcv_splits", "compare_to_baseline", "persistence_predictions", "SharpeReport", "ShiftNull",
    "deflated_sharpe_ratio", "mean_ci", "pbo_cscv", "purged_kfold_splits", "return_moments", "sharpe_report",
    "sharpe_std_error", "shift_null", "shift_null_samples", "stationary_bootstrap_indices", "walk_forward_splits",
]
