"""Z-score feature scaler fitted on the training period, saved as JSON."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from quantnb.errors import ConfigError
from quantnb.runlog import atomic_write_json

_FORMAT = "quantnb.rl.FeatureScaler/1"


class FeatureScaler:
    """Standardise features with the training period's mean and standard deviation, then clip.

    ``scaled = clip((x - mean) / std, -clip_sigma, clip_sigma)``, column by column. A column
    with zero spread in the training period gets ``std = 1`` (it is only centred).

    Parameters
    ----------
    feature_names : sequence of str
        Column order of every array passed to :meth:`transform`.
    mean, std : sequence of float
        Per-feature statistics (``std > 0``); usually from :meth:`fit`.
    clip_sigma : float, default 5.0
        Bound on the absolute scaled value (tames outliers such as flash crashes).
    fit_info : dict, optional
        Provenance kept in the JSON (rows used, first and last timestamp).

    Raises
    ------
    ConfigError
        If lengths differ, a statistic is not finite or ``std <= 0``.
    """

    def __init__(
        self,
        feature_names: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
        *,
        clip_sigma: float = 5.0,
        fit_info: dict[str, Any] | None = None,
    ) -> None:
        self.feature_names: tuple[str, ...] = tuple(feature_names)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        self.clip_sigma = float(clip_sigma)
        self.fit_info: dict[str, Any] = dict(fit_info or {})
        n = len(self.feature_names)
        if self.mean.shape != (n,) or self.std.shape != (n,):
            raise ConfigError(f"scaler has {n} feature names but mean {self.mean.shape} and std {self.std.shape}")
        if not (np.isfinite(self.mean).all() and np.isfinite(self.std).all() and (self.std > 0).all()):
            raise ConfigError("scaler mean/std must be finite with std > 0; refit the scaler on clean features")
        if not self.clip_sigma > 0:
            raise ConfigError(f"clip_sigma={clip_sigma!r}: must be > 0")

    @classmethod
    def fit(cls, features: pl.DataFrame, feature_names: Sequence[str], *, clip_sigma: float = 5.0) -> FeatureScaler:
        """Fit on the rows of ``features`` where every listed feature is present.

        Pass the training period only: statistics that saw the evaluation period leak it.

        Parameters
        ----------
        features : pl.DataFrame
            Output of :func:`compute_features` sliced to the training period (``ts`` optional).
        feature_names : sequence of str
            Columns to fit, in order.
        clip_sigma : float, default 5.0
            See the class docstring.

        Returns
        -------
        FeatureScaler

        Raises
        ------
        ConfigError
            If a column is missing or fewer than 2 complete rows remain.
        """
        names = list(feature_names)
        missing = [c for c in names if c not in features.columns]
        if missing:
            raise ConfigError(f"features frame lacks columns {missing}; compute them with compute_features(bars)")
        arr = features.select(names).to_numpy().astype(np.float64)
        ok = np.isfinite(arr).all(axis=1)
        if ok.sum() < 2:
            raise ConfigError(
                f"only {int(ok.sum())} complete feature rows to fit the scaler on; the training period is shorter "
                "than the indicator warm-up: give it more bars"
            )
        rows = arr[ok]
        std = rows.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        info: dict[str, Any] = {"n_rows": int(ok.sum())}
        if "ts" in features.columns:
            ts = features.filter(pl.Series(ok))["ts"]
            info["first_ts"], info["last_ts"] = str(ts.min()), str(ts.max())
        return cls(names, rows.mean(axis=0), std, clip_sigma=clip_sigma, fit_info=info)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Scale ``x`` element-wise.

        Parameters
        ----------
        x : np.ndarray, shape (..., n_features), float64
            Raw features, last axis in ``feature_names`` order.

        Returns
        -------
        np.ndarray, same shape, float64
            NaN stays NaN.

        Raises
        ------
        ConfigError
            If the last axis is not ``n_features`` long.
        """
        arr = np.asarray(x, dtype=np.float64)
        if arr.shape[-1:] != (len(self.feature_names),):
            raise ConfigError(f"array of shape {arr.shape} does not end with n_features={len(self.feature_names)}")
        return np.clip((arr - self.mean) / self.std, -self.clip_sigma, self.clip_sigma)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (the content of ``scaler.json``)."""
        return {
            "format": _FORMAT,
            "feature_names": list(self.feature_names),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "clip_sigma": self.clip_sigma,
            "fit_info": self.fit_info,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "<dict>") -> FeatureScaler:
        """Rebuild a scaler from :meth:`to_dict` output.

        Raises
        ------
        ConfigError
            Naming ``source`` if a key is missing or a value is invalid.
        """
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ConfigError(f"{source}: not a quantnb FeatureScaler file (expected format {_FORMAT!r})")
        try:
            return cls(
                data["feature_names"],
                data["mean"],
                data["std"],
                clip_sigma=data["clip_sigma"],
                fit_info=data.get("fit_info"),
            )
        except KeyError as e:
            raise ConfigError(f"{source}: missing key {e}; re-export the scaler with FeatureScaler.save") from e
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from e

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the scaler as JSON, atomically. Returns the path written."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FeatureScaler:
        """Read a scaler written by :meth:`save`.

        Raises
        ------
        ConfigError
            If the file is missing, not JSON or not a scaler file (the message names it).
        """
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ConfigError(f"{p}: scaler file not found; fit one with FeatureScaler.fit and save it") from e
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: not valid JSON ({e}); re-export the scaler") from e
        return cls.from_dict(data, source=str(p))

    def __repr__(self) -> str:
        return f"FeatureScaler(n_features={len(self.feature_names)}, clip_sigma={self.clip_sigma})"
