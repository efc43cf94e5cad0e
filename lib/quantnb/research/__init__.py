"""Research core: labelling, features, chronological splits, feature scaling and window datasets.

Typical use by the labelling and training stages::

    labelled = label_bars(bars, lookahead_min=60, threshold_short_frac=-0.004, threshold_long_frac=0.008)
    suffix = label_suffix(60, -0.004, 0.008)                  # "SELL_0004_BUY_0008_1h"
    print(format_distribution(label_distribution(labelled)))  # "SELL: 12.3% | NEU: 74.1% | BUY: 13.6%"
    data = prepare_datasets(labelled, seq_len=60, train_frac=0.7, val_frac=0.15, lookahead_min=60)
    data.train, data.val, data.test, data.scaler, data.features
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantnb._lazy import attach

if TYPE_CHECKING:  # the names for type checkers; at run time each loads on first use
    from quantnb.features import FeatureScaler
    from quantnb.research._afml import (
        BARRIER_PROFIT_TAKE,
        BARRIER_STOP_LOSS,
        BARRIER_VERTICAL,
        cusum_events,
        ewm_volatility,
        fixed_horizon_t1,
        sample_weights,
        sequential_bootstrap,
        triple_barrier_labels,
    )
    from quantnb.research._dataset import N_CLASSES, WindowDataset
    from quantnb.research._features import build_features, feature_columns
    from quantnb.research._labels import (
        BUY,
        LABEL_NAMES,
        NEUTRAL,
        SELL,
        THRESHOLD_TOL,
        format_distribution,
        label_bars,
        label_counts,
        label_distribution,
        label_events,
        label_suffix,
    )
    from quantnb.research._meta import (
        META_LABEL_NAMES,
        SKIP,
        TAKE,
        bet_size,
        meta_labels,
        momentum_side,
        side_from_column,
    )
    from quantnb.research._prepare import PreparedData, prepare_datasets
    from quantnb.research._sizing import SizingComparison, compare_precision_to_take_all, compare_sizing
    from quantnb.research._split import DataSplits, chronological_split

__getattr__, __dir__ = attach(__name__, {
    "FeatureScaler": "quantnb.features",
    "BARRIER_PROFIT_TAKE": "quantnb.research._afml",
    "BARRIER_STOP_LOSS": "quantnb.research._afml",
    "BARRIER_VERTICAL": "quantnb.research._afml",
    "cusum_events": "quantnb.research._afml",
    "ewm_volatility": "quantnb.research._afml",
    "fixed_horizon_t1": "quantnb.research._afml",
    "sample_weights": "quantnb.research._afml",
    "sequential_bootstrap": "quantnb.research._afml",
    "triple_barrier_labels": "quantnb.research._afml",
    "N_CLASSES": "quantnb.research._dataset",
    "WindowDataset": "quantnb.research._dataset",
    "build_features": "quantnb.research._features",
    "feature_columns": "quantnb.research._features",
    "BUY": "quantnb.research._labels",
    "LABEL_NAMES": "quantnb.research._labels",
    "NEUTRAL": "quantnb.research._labels",
    "SELL": "quantnb.research._labels",
    "THRESHOLD_TOL": "quantnb.research._labels",
    "format_distribution": "quantnb.research._labels",
    "label_bars": "quantnb.research._labels",
    "label_counts": "quantnb.research._labels",
    "label_distribution": "quantnb.research._labels",
    "label_suffix": "quantnb.research._labels",
    "label_events": "quantnb.research._labels",
    "META_LABEL_NAMES": "quantnb.research._meta",
    "SKIP": "quantnb.research._meta",
    "TAKE": "quantnb.research._meta",
    "bet_size": "quantnb.research._meta",
    "meta_labels": "quantnb.research._meta",
    "momentum_side": "quantnb.research._meta",
    "side_from_column": "quantnb.research._meta",
    "SizingComparison": "quantnb.research._sizing",
    "compare_sizing": "quantnb.research._sizing",
    "compare_precision_to_take_all": "quantnb.research._sizing",
    "PreparedData": "quantnb.research._prepare",
    "prepare_datasets": "quantnb.research._prepare",
    "DataSplits": "quantnb.research._split",
    "chronological_split": "quantnb.research._split",
})

__all__ = [
    "label_bars",
    "label_events",
    "BARRIER_PROFIT_TAKE",
    "BARRIER_STOP_LOSS",
    "BARRIER_VERTICAL",
    "cusum_events",
    "ewm_volatility",
    "fixed_horizon_t1",
    "sample_weights",
    "sequential_bootstrap",
    "triple_barrier_labels",
    "meta_labels",
    "momentum_side",
    "side_from_column",
    "bet_size",
    "compare_sizing",
    "compare_precision_to_take_all",
    "SizingComparison",
    "META_LABEL_NAMES",
    "SKIP",
    "TAKE",
    "label_suffix",
    "label_counts",
    "label_distribution",
    "format_distribution",
    "SELL",
    "NEUTRAL",
    "BUY",
    "LABEL_NAMES",
    "N_CLASSES",
    "THRESHOLD_TOL",
    "feature_columns",
    "build_features",
    "chronological_split",
    "DataSplits",
    "FeatureScaler",
    "WindowDataset",
    "prepare_datasets",
    "PreparedData",
]
