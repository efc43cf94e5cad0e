from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from loguru import logger

from quantnb.classifier._afml import sequential_bootstrap
from quantnb.classifier._dataset import WindowDataset
from quantnb.classifier._features import build_features, feature_columns
from quantnb.classifier._labels import LABEL_NAMES, format_distribution, label_distribution
from quantnb.classifier._split import DataSplits, chronological_split
from quantnb.errors import ConfigError
from quantnb.features import FeatureScaler


@dataclass(frozen=True)
class PreparedData:
    """Everything training needs from labelled bars: the three window datasets and the scaler.

    Attributes
    ----------
    train, val, test : WindowDataset
        Window datasets of the chronological splits (no window crosses a split or a gap).
    scaler : FeatureScaler
        Fitted on the training split only; save it with the model.
    features : list of str
        Feature names, in model input order.
    splits : DataSplits
        The split frames (with feature columns) and the embargo.
    seq_len : int
        Window length, rows (minutes).
    class_names : tuple of str
        The label classes: SELL, NEUTRAL, BUY, or SKIP, TAKE for meta-labels.
    """

    train: WindowDataset
    val: WindowDataset
    test: WindowDataset
    scaler: FeatureScaler
    features: list[str]
    splits: DataSplits
    seq_len: int
    class_names: tuple[str, ...] = LABEL_NAMES

    def summary(self) -> dict[str, Any]:
        """Return per split: time span, rows, windows and label distribution (JSON/YAML-ready)."""
        spans = self.splits.spans()
        out: dict[str, Any] = {}
        for name, ds in (("train", self.train), ("val", self.val), ("test", self.test)):
            out[name] = {**spans[name], "windows": len(ds),
                         "label_distribution": _distribution(ds, self.class_names)}
        return out


def prepare_datasets(
    labelled: pl.DataFrame,
    *,
    seq_len: int,
    train_frac: float,
    val_frac: float,
    lookahead_min: int,
    embargo_min: int | None = None,
    features: Sequence[str] | None = None,
    weight_col: str | None = None,
    class_names: Sequence[str] = LABEL_NAMES,
    extra_features: Sequence[str] = (),
    bootstrap_seed: int | None = None,
) -> PreparedData:
    """Build features, split chronologically with an embargo, fit the scaler on train, index windows.

    Parameters
    ----------
    labelled : polars.DataFrame
        Output of ``label_bars`` (one or several files concatenated), in time order: ``ts``,
        OHLCV, optional book columns and ``gap_before``, ``label``.
    seq_len : int
        Window length, rows (minutes), >= 1.
    train_frac, val_frac : float
        Row fractions of train and validation; test gets the rest.
    lookahead_min : int
        The labelling lookahead, minutes (the minimum embargo).
    embargo_min : int, optional
        Embargo after each split, minutes; default ``lookahead_min``.
    features : sequence of str, optional
        Features to use; default every one the columns allow (see ``feature_columns``).
    weight_col : str, optional
        Sample-weight column of the labels (``uniqueness`` or ``return_weight``), carried by
        the windows and used by the trainer's loss; default unweighted.
    class_names : sequence of str
        Names of the label classes 0, 1, ...: SELL, NEUTRAL, BUY (default) or
        :data:`quantnb.classifier.META_LABEL_NAMES` for meta-labels.
    extra_features : sequence of str
        Columns of ``labelled`` fed to the model as they are (scaled like the others) after the
        registry's features, e.g. ``("side",)``: the primary's side for a meta-labelling secondary
        model (AFML 3.6); a null makes its row unusable.
    bootstrap_seed : int, optional
        Draw the training labels by sequential bootstrap (AFML 4.5, seeded) and weight each
        training window by how often its label was drawn (times ``weight_col``'s weight): the
        loss then sees a sample closer to independent; needs ``t1``. Default: every label once.

    Raises
    ------
    ConfigError
        If a parameter is out of range, a column is missing, or a split has no window.
    DataError
        If ``ts`` is invalid or a split is empty.
    """
    if "label" not in labelled.columns:
        raise ConfigError(f"labelled: no 'label' column (columns: {labelled.columns}); run label_bars first")
    names = list(features) if features is not None else feature_columns(labelled)
    frame = build_features(labelled, names)
    missing = [c for c in extra_features if c not in labelled.columns]
    if missing:
        raise ConfigError(f"extra_features: {missing} are not columns of the labelled bars (columns: "
                          f"{labelled.columns}); relabel the data or drop them")
    names = names + [c for c in extra_features if c not in names]
    splits = chronological_split(frame, train_frac=train_frac, val_frac=val_frac,
                                 lookahead_min=lookahead_min, embargo_min=embargo_min)
    scaler = FeatureScaler.fit(splits.train, names)
    train, train_weight = splits.train, weight_col
    if bootstrap_seed is not None:
        train, train_weight = _bootstrap_weighted(train, weight_col, bootstrap_seed), _BOOTSTRAP_COL
    sets = [WindowDataset.from_frame(part, scaler, seq_len, weight_col=w)
            for part, w in ((train, train_weight), (splits.val, weight_col), (splits.test, weight_col))]
    for name, ds in zip(("train", "val", "test"), sets, strict=True):
        if len(ds) == 0:
            raise ConfigError(f"seq_len: {seq_len} leaves no window in the {name} split "
                              f"({getattr(splits, name).height} rows); use a shorter seq_len or more data")
        unusable = int((~np.isfinite(ds.features).all(axis=1)).sum())
        if unusable > 0.1 * ds.features.shape[0]:
            logger.warning("dataset/{}: {} of {} rows have a missing or non-finite feature and cannot enter a "
                           "window; check the input bars or pass a shorter feature list", name, unusable,
                           ds.features.shape[0])
        dist = _distribution(ds, tuple(class_names))
        text = (format_distribution(dist) if tuple(class_names) == LABEL_NAMES
                else " | ".join(f"{k}: {100 * v:.1f}%" for k, v in dist.items()))
        logger.info("dataset/{}: {} windows of {} min x {} features | {}", name, len(ds), seq_len, len(names), text)
    return PreparedData(sets[0], sets[1], sets[2], scaler=scaler, features=names, splits=splits, seq_len=int(seq_len),
                        class_names=tuple(class_names))


def _distribution(ds: WindowDataset, names: tuple[str, ...]) -> dict[str, float]:
    """Share of each class among the windows of ``ds``, keyed by class name."""
    counts = ds.class_counts(len(names))
    if names == LABEL_NAMES:
        return label_distribution(dict(zip(LABEL_NAMES, counts.tolist(), strict=True)))
    total = int(counts.sum())
    return {k: (int(c) / total if total else 0.0) for k, c in zip(names, counts, strict=True)}


_BOOTSTRAP_COL = "_sequential_bootstrap_weight"


def _bootstrap_weighted(train: pl.DataFrame, weight_col: str | None, seed: int) -> pl.DataFrame:
    """Add the draw count of each labelled row (sequential bootstrap) times its weight as :data:`_BOOTSTRAP_COL`."""
    rows = train.with_row_index("_row").filter(pl.col("label").is_not_null() & pl.col("t1").is_not_null())
    draws = sequential_bootstrap(rows.select("ts", "t1"), seed=seed)
    counts = np.zeros(train.height)
    np.add.at(counts, rows["_row"].to_numpy()[draws], 1.0)
    base = train[weight_col].fill_null(0.0).to_numpy() if weight_col else 1.0
    logger.info("dataset/train: sequential bootstrap drew {} of {} labels at least once (seed {})",
                int((counts > 0).sum()), rows.height, seed)
    return train.with_columns(pl.Series(_BOOTSTRAP_COL, counts * base))
