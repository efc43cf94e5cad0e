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

__getattr__, __dir__ = attach(__name__)

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
    "feature_columns",
    "build_features",
    "chronological_split",
    "DataSplits",
    "FeatureScaler",
    "WindowDataset",
    "prepare_datasets",
    "PreparedData",
]
