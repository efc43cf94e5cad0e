"""Research core: labelling, features, chronological splits, feature scaling and window datasets.

Typical use by the labelling and training stages::

    labelled = label_bars(bars, lookahead_min=60, threshold_short_frac=-0.004, threshold_long_frac=0.008)
    suffix = label_suffix(60, -0.004, 0.008)                  # "SELL_0004_BUY_0008_1h"
    print(format_distribution(label_distribution(labelled)))  # "SELL: 12.3% | NEU: 74.1% | BUY: 13.6%"
    data = prepare_datasets(labelled, seq_len=60, train_frac=0.7, val_frac=0.15, lookahead_min=60)
    data.train, data.val, data.test, data.scaler, data.features
"""

from __future__ import annotations

from quantnb.features import FeatureScaler
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
    label_suffix,
)
from quantnb.research._prepare import PreparedData, prepare_datasets
from quantnb.research._split import DataSplits, chronological_split

__all__ = [
    "label_bars",
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
