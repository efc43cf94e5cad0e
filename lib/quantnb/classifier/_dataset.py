from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import polars as pl
import torch
from torch.utils.data import Dataset

from quantnb.classifier._bars import break_before_expr, check_bars
from quantnb.errors import ConfigError
from quantnb.features import FeatureScaler

N_CLASSES = 3


class WindowDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Sliding windows of ``seq_len`` consecutive bars over one contiguous feature array.

    Windows are indexed, not copied: the dataset holds the ``(rows, n_features)`` array and the
    end row of each usable window, so memory grows with rows x features, not
    rows x seq_len x features. A window ``[e - seq_len + 1, e]`` is usable when its rows are
    consecutive minutes (no ``break_before`` inside it), every feature in it is finite, and the
    label of its last row is a class (0, 1, 2); its target is that label.

    Parameters
    ----------
    features : numpy.ndarray, shape (rows, n_features), float32
        Scaled features, rows in time order (converted to C-contiguous float32 if needed).
    labels : numpy.ndarray, shape (rows,), integer
        Class of each row (0 SELL, 1 NEUTRAL, 2 BUY); -1 for a row without a label.
    seq_len : int
        Window length, rows (minutes), >= 1.
    break_before : numpy.ndarray, shape (rows,), bool, optional
        True where a row does not directly follow the previous one (a gap); default none.
    weights : numpy.ndarray, shape (rows,), float, optional
        Sample weight of each row's label (e.g. AFML uniqueness), finite and >= 0; a window takes
        the weight of its last row. Default none: every window weighs the same.

    Raises
    ------
    ConfigError
        If ``seq_len`` is not a positive integer, the array shapes disagree or a weight is
        negative or not finite on a labelled row.
    """

    features: np.ndarray
    labels: np.ndarray
    seq_len: int
    ends: np.ndarray
    weights: np.ndarray | None
    _offsets: np.ndarray

    def __init__(self, features: np.ndarray, labels: np.ndarray, seq_len: int,
                 break_before: np.ndarray | None = None, weights: np.ndarray | None = None):
        if isinstance(seq_len, bool) or not isinstance(seq_len, numbers.Integral) or seq_len < 1:
            raise ConfigError(f"seq_len: got {seq_len!r}; give a window length in minutes >= 1, e.g. 60")
        x = np.ascontiguousarray(features, dtype=np.float32)
        y = np.asarray(labels, dtype=np.int64)
        if x.ndim != 2 or y.shape != (x.shape[0],):
            raise ConfigError(f"features {x.shape} and labels {y.shape} must be (rows, n_features) and (rows,)")
        brk = np.zeros(x.shape[0], dtype=bool) if break_before is None else np.asarray(break_before, dtype=bool)
        if brk.shape != y.shape:
            raise ConfigError(f"break_before {brk.shape} must have shape (rows,) = {y.shape}")
        self.features = x
        self.labels = y
        self.seq_len = int(seq_len)
        self.ends = _window_ends(x, y, brk, self.seq_len)
        self.weights = None if weights is None else _check_weights(weights, y.shape, self.ends)
        self._offsets = np.arange(-self.seq_len + 1, 1, dtype=np.int64)

    @classmethod
    def from_frame(cls, df: pl.DataFrame, scaler: FeatureScaler, seq_len: int,
                   label_col: str | None = "label", weight_col: str | None = None) -> WindowDataset:
        """Build the dataset of one split from a frame of bars with feature columns.

        Parameters
        ----------
        df : polars.DataFrame
            Bars in time order with ``ts``, the scaler's feature columns and ``label_col``;
            gaps come from ``ts`` steps other than one minute and from ``gap_before``.
        scaler : FeatureScaler
            Fitted on the training split; defines the feature order.
        seq_len : int
            Window length, rows (minutes).
        label_col : str or None
            Label column; ``None`` for unlabelled bars (inference: every usable window, target -1).
        weight_col : str or None
            Sample-weight column (``uniqueness`` or ``return_weight`` of the labelling stage);
            ``None``: unweighted.

        Raises
        ------
        ConfigError
            If a column is missing or ``seq_len`` is invalid.
        DataError
            If ``ts`` is invalid (unsorted, duplicated, off the minute grid).
        """
        check_bars(df)
        if label_col is not None and label_col not in df.columns:
            raise ConfigError(f"label_col: column {label_col!r} is not in the frame; label the bars first")
        if weight_col is not None and weight_col not in df.columns:
            raise ConfigError(f"weight_col: column {weight_col!r} is not in the frame (columns: {df.columns}); "
                              "label with the labelling stage of this version, or pass weight_col=None")
        x = scaler.transform(df)
        brk = df.select(break_before_expr(df)).to_series().to_numpy() if df.height else np.zeros(0, bool)
        if label_col is None:
            y = np.zeros(df.height, dtype=np.int64)
        else:
            y = df.get_column(label_col).cast(pl.Int64).fill_null(-1).to_numpy()
        w = None if weight_col is None else df.get_column(weight_col).cast(pl.Float64).fill_null(0.0).to_numpy()
        ds = cls(x, y, seq_len, brk, w)
        if label_col is None:
            ds.labels[:] = -1
        return ds

    def __len__(self) -> int:
        return int(self.ends.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return window ``index``: x of shape (seq_len, n_features) float32 (a view) and its int64 target."""
        end = int(self.ends[index])
        x = torch.from_numpy(self.features[end - self.seq_len + 1:end + 1])
        return x, torch.tensor(self.labels[end], dtype=torch.int64)

    @property
    def n_features(self) -> int:
        """Number of feature columns."""
        return int(self.features.shape[1])

    @property
    def targets(self) -> np.ndarray:
        """numpy.ndarray, shape (n_windows,), int64: the target of every window."""
        return self.labels[self.ends]

    @property
    def window_weights(self) -> np.ndarray | None:
        """numpy.ndarray, shape (n_windows,), float64, or None: the sample weight of every window."""
        return None if self.weights is None else self.weights[self.ends]

    def class_counts(self, n_classes: int = N_CLASSES) -> np.ndarray:
        """Count the windows per class.

        Parameters
        ----------
        n_classes : int
            3 (SELL, NEUTRAL, BUY) or 2 (SKIP, TAKE: meta-labels).

        Returns
        -------
        numpy.ndarray, shape (n_classes,), int64
        """
        t = self.targets
        return np.bincount(t[t >= 0], minlength=n_classes)[:n_classes].astype(np.int64)

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather a batch of windows in one vectorised copy.

        Parameters
        ----------
        indices : sequence of int or numpy.ndarray, shape (batch,)
            Window indices in ``[0, len(self))``.

        Returns
        -------
        x : torch.Tensor, shape (batch, seq_len, n_features), float32
        y : torch.Tensor, shape (batch,), int64
        """
        ends = self.ends[np.asarray(indices, dtype=np.int64)]
        rows = ends[:, None] + self._offsets[None, :]
        return torch.from_numpy(self.features[rows]), torch.from_numpy(self.labels[ends])


def _window_ends(x: np.ndarray, y: np.ndarray, brk: np.ndarray, seq_len: int) -> np.ndarray:
    n = x.shape[0]
    if n < seq_len:
        return np.zeros(0, dtype=np.int64)
    bad_row = ~np.isfinite(x).all(axis=1)
    bad_cum = np.concatenate([[0], np.cumsum(bad_row, dtype=np.int64)])
    brk_cum = np.concatenate([[0], np.cumsum(brk, dtype=np.int64)])
    ends = np.arange(seq_len - 1, n, dtype=np.int64)
    starts = ends - seq_len + 1
    ok = (bad_cum[ends + 1] - bad_cum[starts] == 0) & (brk_cum[ends + 1] - brk_cum[starts + 1] == 0)
    ok &= (y[ends] >= 0) & (y[ends] < N_CLASSES)
    return ends[ok]


def _check_weights(weights: np.ndarray, shape: tuple[int, ...], ends: np.ndarray) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != shape:
        raise ConfigError(f"weights {w.shape} must have shape (rows,) = {shape}")
    used = w[ends]
    bad = np.flatnonzero(~np.isfinite(used) | (used < 0))
    if bad.size:
        raise ConfigError(f"weights: row {int(ends[bad[0]])} has weight {used[bad[0]]!r}; sample weights must be "
                          "finite and >= 0 (relabel the data)")
    return w
