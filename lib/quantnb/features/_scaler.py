"""The one feature scaler: z-scores fitted on the training period, optionally clipped, saved as JSON."""

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

from quantnb.errors import ConfigError
from quantnb.runs import atomic_write_json

FORMAT = "quantnb.FeatureScaler/2"
_RL_FORMAT_1 = "quantnb.rl.FeatureScaler/1"  # agent bundles before the feature layer (clip 5 sigma)
_RESEARCH_KIND_1 = "quantnb.FeatureScaler"  # model bundles before the feature layer (no clip)


class FeatureScaler:
    """Standardise features with the training period's mean and standard deviation, optionally clipped.

    ``transform(x) = clip((x - mean) / std, -clip_sigma, clip_sigma)`` per feature (no clip when
    ``clip_sigma`` is None), population std (``ddof=0``) as scikit-learn's ``StandardScaler``.
    Statistics come from the rows where every feature is finite (the rows a model can use); a
    feature constant on those rows gets ``std = 1`` (only centred). Non-finite inputs come out
    as NaN, so they keep marking a row unusable.

    Parameters
    ----------
    feature_names : sequence of str
        Column order of every array passed to :meth:`transform`.
    mean, std : sequence of float or numpy.ndarray
        Per-feature statistics (finite, ``std > 0``), same length as ``feature_names``.
    clip_sigma : float or None, default None
        Bound on the absolute scaled value (the agent uses 5.0 to tame flash crashes); None: no clip.
    fit_info : dict, optional
        Provenance kept in the file (``n_rows``, first and last ``ts``).

    Raises
    ------
    ConfigError
        If lengths differ, a name repeats, a statistic is not finite, a std is not positive, or
        ``clip_sigma`` is not positive.
    """

    def __init__(self, feature_names: Sequence[str], mean: Sequence[float] | np.ndarray,
                 std: Sequence[float] | np.ndarray, *,
                 clip_sigma: float | None = None, fit_info: dict[str, Any] | None = None) -> None:
        self.feature_names: list[str] = [str(f) for f in feature_names]
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        n = len(self.feature_names)
        if self.mean.shape != (n,) or self.std.shape != (n,):
            raise ConfigError(f"scaler: {n} feature names but mean {self.mean.shape} and std {self.std.shape}")
        if len(set(self.feature_names)) != n:
            raise ConfigError(f"scaler: duplicate feature names in {list(self.feature_names)}")
        if not (np.isfinite(self.mean).all() and np.isfinite(self.std).all() and (self.std > 0).all()):
            raise ConfigError("scaler: mean and std must be finite with std > 0; refit it on clean features")
        if clip_sigma is not None and not float(clip_sigma) > 0:
            raise ConfigError(f"clip_sigma={clip_sigma!r}: must be > 0, or None for no clip")
        self.clip_sigma: float | None = None if clip_sigma is None else float(clip_sigma)
        self.fit_info: dict[str, Any] = dict(fit_info or {})

    @property
    def n_rows(self) -> int:
        """Return the number of rows the statistics were fitted on (0 if unknown)."""
        return int(self.fit_info.get("n_rows", 0))

    @classmethod
    def fit(cls, features: pl.DataFrame, feature_names: Sequence[str], *,
            clip_sigma: float | None = None) -> FeatureScaler:
        """Fit on the rows of ``features`` where every listed feature is finite.

        Pass the training period only: statistics that saw the evaluation period leak it.

        Parameters
        ----------
        features : polars.DataFrame
            Feature columns of the training period (``ts`` optional, recorded in ``fit_info``).
        feature_names : sequence of str
            Columns to fit, in model input order.
        clip_sigma : float or None, default None
            See the class docstring.


        Raises
        ------
        ConfigError
            If a column is missing, or fewer than 2 complete rows remain (naming the features
            that have no finite value).
        """
        names = list(feature_names)
        missing = [c for c in names if c not in features.columns]
        if missing:
            raise ConfigError(f"features: {missing} are not columns of the training frame; compute the features first")
        arr = features.select(names).cast(pl.Float64).to_numpy().astype(np.float64)
        finite = np.isfinite(arr)
        ok = finite.all(axis=1)
        if ok.sum() < 2:
            empty = [f for f, c in zip(names, finite.sum(axis=0), strict=True) if c == 0]
            raise ConfigError(
                f"only {int(ok.sum())} of {features.height} training rows have every feature finite"
                + (f" (features {empty} have no finite value: drop them or fix the bars)" if empty else "")
                + "; the training period is shorter than the warm-up: give it more bars")
        rows = arr[ok]
        std = rows.std(axis=0)
        flat = [f for f, s in zip(names, std, strict=True) if not s > 0]
        if flat:
            logger.warning("scaler: features {} are constant on the training rows; their std is set to 1.0", flat)
        info: dict[str, Any] = {"n_rows": int(ok.sum())}
        if "ts" in features.columns:
            ts = features.filter(pl.Series(ok))["ts"]
            info["first_ts"], info["last_ts"] = str(ts.min()), str(ts.max())
        return cls(names, rows.mean(axis=0), np.where(std > 0, std, 1.0), clip_sigma=clip_sigma, fit_info=info)

    def transform(self, data: pl.DataFrame | np.ndarray, *, dtype: Any = np.float64) -> np.ndarray:
        """Scale features element-wise.

        Parameters
        ----------
        data : polars.DataFrame or numpy.ndarray
            A frame holding the feature columns, or an array of shape (..., n_features).
        dtype : numpy dtype, default float64
            Dtype of the result (research datasets use float32).

        Returns
        -------
        numpy.ndarray, shape (rows, n_features) or the array's shape, ``dtype``, C-contiguous
            NaN where the input is null or not finite.

        Raises
        ------
        ConfigError
            If a feature column is missing or the last axis is not ``n_features`` long.
        """
        if isinstance(data, pl.DataFrame):
            missing = [f for f in self.feature_names if f not in data.columns]
            if missing:
                raise ConfigError(f"features: {missing} are missing from the frame; compute the features first")
            x = data.select(self.feature_names).cast(pl.Float64).to_numpy().astype(np.float64)
        else:
            x = np.asarray(data, dtype=np.float64)
            if x.shape[-1:] != (len(self.feature_names),):
                raise ConfigError(f"array of shape {x.shape} does not end with n_features={len(self.feature_names)}")
        with np.errstate(invalid="ignore"):
            out = (x - self.mean) / self.std
        out = np.where(np.isfinite(out), out, np.nan)
        if self.clip_sigma is not None:
            out = np.clip(out, -self.clip_sigma, self.clip_sigma)
        return np.ascontiguousarray(out, dtype=dtype)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready state (the content of ``scaler.json``).

        Returns
        -------
        dict
            ``format``, ``feature_names``, ``mean``, ``std``, ``clip_sigma`` (null: no clip), ``fit_info``.
        """
        return {"format": FORMAT, "feature_names": list(self.feature_names), "mean": self.mean.tolist(),
                "std": self.std.tolist(), "clip_sigma": self.clip_sigma, "fit_info": self.fit_info}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "<dict>") -> FeatureScaler:
        """Rebuild a scaler from :meth:`to_dict` output or from an older scaler file.

        Reads the current format, the agent bundles' ``quantnb.rl.FeatureScaler/1`` (clipped at
        its ``clip_sigma``) and the model bundles' ``kind: quantnb.FeatureScaler`` version 1 (no clip).

        Parameters
        ----------
        data : dict
            The parsed JSON.
        source : str
            File name for messages.


        Raises
        ------
        ConfigError
            Naming ``source``, if the format is unknown, a key is missing or a value invalid.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: not a quantnb FeatureScaler file (a JSON object expected)")
        fmt = data.get("format")
        if fmt == FORMAT or fmt == _RL_FORMAT_1:
            clip, info = data.get("clip_sigma", ...), data.get("fit_info")
        elif data.get("kind") == _RESEARCH_KIND_1 and data.get("version") == 1:
            clip, info = None, {"n_rows": int(data.get("n_rows", 0))}
        else:
            raise ConfigError(
                f"{source}: not a quantnb FeatureScaler file (format {fmt!r}; expected {FORMAT!r}, "
                f"{_RL_FORMAT_1!r} or kind {_RESEARCH_KIND_1!r} version 1); re-export the bundle it belongs to")
        try:
            if clip is ...:
                raise KeyError("clip_sigma")
            return cls(data["feature_names"], data["mean"], data["std"], clip_sigma=clip, fit_info=info)
        except KeyError as e:
            raise ConfigError(f"{source}: key {e} is missing; re-save the scaler with FeatureScaler.save") from e
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{source}: {e}") from e

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the scaler as JSON, atomically; return the path written (an OSError if it cannot be).

        Parameters
        ----------
        path : str or path-like
            Destination file.
        """
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FeatureScaler:
        """Read a scaler file (any format :meth:`from_dict` reads).

        Parameters
        ----------
        path : str or path-like
            The JSON file.

        Raises
        ------
        ConfigError
            If the file is missing, not JSON or not a scaler (the message names it and the fix).
        """
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ConfigError(f"{p}: scaler file is missing; the bundle is incomplete — re-export it") from e
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: not valid JSON ({e}); re-export the bundle") from e
        return cls.from_dict(data, source=str(p))

    def __repr__(self) -> str:
        stats = ", ".join(f"{f}={m:.3g}±{s:.3g}" for f, m, s in zip(self.feature_names, self.mean, self.std,
                                                                   strict=True) if math.isfinite(m))
        return f"FeatureScaler(clip_sigma={self.clip_sigma}, {stats})"
