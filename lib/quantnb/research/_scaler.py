from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from loguru import logger

from quantnb.errors import ConfigError, DataError
from quantnb.runlog import atomic_write_json

_KIND = "quantnb.FeatureScaler"


class FeatureScaler:
    """Standardise features with a mean and standard deviation fitted on the training split only.

    ``transform(x) = (x - mean) / std`` per feature, like scikit-learn's ``StandardScaler``
    (population std, ``ddof=0``). Non-finite values are ignored when fitting and stay NaN when
    transforming, so they keep marking the row as unusable.

    Parameters
    ----------
    feature_names : sequence of str
        Feature column names, in model input order.
    mean, std : sequence of float
        Per-feature mean and standard deviation (std > 0), same length as ``feature_names``.
    n_rows : int
        Rows the statistics were fitted on (for the record).

    Raises
    ------
    ConfigError
        If lengths differ, a value is not finite or a std is not positive.
    """

    def __init__(self, feature_names: Sequence[str], mean: Sequence[float], std: Sequence[float], n_rows: int = 0):
        names = [str(f) for f in feature_names]
        mean_a = np.asarray(mean, dtype=np.float64)
        std_a = np.asarray(std, dtype=np.float64)
        if not (len(names) == mean_a.shape[0] == std_a.shape[0]) or mean_a.ndim != 1 or std_a.ndim != 1:
            raise ConfigError(f"scaler: {len(names)} feature names but {mean_a.shape} means and {std_a.shape} stds")
        if len(set(names)) != len(names):
            raise ConfigError(f"scaler: duplicate feature names in {names}")
        if not (np.isfinite(mean_a).all() and np.isfinite(std_a).all() and (std_a > 0).all()):
            raise ConfigError("scaler: mean and std must be finite and std > 0 for every feature")
        self.feature_names: list[str] = names
        self.mean: np.ndarray = mean_a
        self.std: np.ndarray = std_a
        self.n_rows = int(n_rows)

    @classmethod
    def fit(cls, train: pl.DataFrame, feature_names: Sequence[str]) -> FeatureScaler:
        """Fit the scaler on the training frame.

        Parameters
        ----------
        train : polars.DataFrame
            Training rows only, holding every column of ``feature_names``.
        feature_names : sequence of str
            Feature columns, in model input order.

        Returns
        -------
        FeatureScaler
            A feature whose finite values are constant gets std 1.0 (logged as a warning).

        Raises
        ------
        ConfigError
            If a feature column is missing.
        DataError
            If a feature has no finite value in ``train``.
        """
        missing = [f for f in feature_names if f not in train.columns]
        if missing:
            raise ConfigError(f"features: {missing} are not columns of the training frame; build_features first")
        x = train.select(feature_names).cast(pl.Float64).to_numpy()
        x = np.where(np.isfinite(x), x, np.nan)
        counts = np.isfinite(x).sum(axis=0)
        empty = [f for f, c in zip(feature_names, counts, strict=True) if c == 0]
        if empty:
            raise DataError(f"features {empty} have no finite value in the {train.height} training rows; "
                            "drop them from the feature list or fix the input bars")
        mean = np.nanmean(x, axis=0)
        std = np.nanstd(x, axis=0)
        flat = [f for f, s in zip(feature_names, std, strict=True) if not s > 0]
        if flat:
            logger.warning("scaler: features {} are constant on train; their std is set to 1.0", flat)
        std = np.where(std > 0, std, 1.0)
        return cls(feature_names, mean, std, n_rows=train.height)

    def transform(self, data: pl.DataFrame | np.ndarray) -> np.ndarray:
        """Standardise features.

        Parameters
        ----------
        data : polars.DataFrame or numpy.ndarray
            A frame holding the feature columns, or an array of shape (rows, n_features).

        Returns
        -------
        numpy.ndarray, shape (rows, n_features), float32
            C-contiguous; nulls and non-finite inputs become NaN.

        Raises
        ------
        ConfigError
            If a feature column is missing or the array has the wrong width.
        """
        if isinstance(data, pl.DataFrame):
            missing = [f for f in self.feature_names if f not in data.columns]
            if missing:
                raise ConfigError(f"features: {missing} are missing from the frame; build_features first")
            x = data.select(self.feature_names).cast(pl.Float64).to_numpy()
        else:
            x = np.asarray(data, dtype=np.float64)
            if x.ndim != 2 or x.shape[1] != len(self.feature_names):
                raise ConfigError(f"data: shape {x.shape}, expected (rows, {len(self.feature_names)})")
        with np.errstate(invalid="ignore"):
            out = (x - self.mean) / self.std
        out[~np.isfinite(out)] = np.nan
        return np.ascontiguousarray(out, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready state: kind, feature names, mean, std, n_rows."""
        return {"kind": _KIND, "version": 1, "feature_names": self.feature_names,
                "mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std], "n_rows": self.n_rows}

    @classmethod
    def from_dict(cls, state: dict[str, Any], *, source: str = "scaler") -> FeatureScaler:
        """Rebuild a scaler from :meth:`to_dict` output.

        Raises
        ------
        ConfigError
            If a key is missing or a value invalid; the message names ``source`` and the key.
        """
        if not isinstance(state, dict) or state.get("kind") != _KIND:
            raise ConfigError(f"{source}: not a quantnb FeatureScaler state (expected kind {_KIND!r})")
        for key in ("feature_names", "mean", "std"):
            if key not in state:
                raise ConfigError(f"{source}: key {key!r} is missing; re-save the model bundle")
        try:
            return cls(state["feature_names"], state["mean"], state["std"], n_rows=int(state.get("n_rows", 0)))
        except (TypeError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise ConfigError(f"{source}: {e}") from e
            raise ConfigError(f"{source}: invalid values ({e})") from e

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the scaler as JSON, atomically; return the path."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FeatureScaler:
        """Read a scaler written by :meth:`save`.

        Raises
        ------
        ConfigError
            If the file is missing, not JSON, or not a valid scaler state (the message names it).
        """
        p = Path(path)
        try:
            state = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ConfigError(f"{p}: scaler file is missing; the model bundle is incomplete — re-save it") from e
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: not valid JSON ({e}); re-save the model bundle") from e
        return cls.from_dict(state, source=str(p))

    def __repr__(self) -> str:
        stats = ", ".join(f"{f}={m:.3g}±{s:.3g}" for f, m, s in zip(self.feature_names, self.mean, self.std,
                                                                   strict=True) if math.isfinite(m))
        return f"FeatureScaler({stats})"
