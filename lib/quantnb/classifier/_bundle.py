from __future__ import annotations

import datetime as dt
import hashlib
import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import yaml
from torch import nn

from quantnb.classifier._tcn_lstm import HybridTCNLSTM
from quantnb.errors import ConfigError
from quantnb.features import FeatureScaler
from quantnb.runs import atomic_path, atomic_write_text, package_versions

BUNDLE_FORMAT = "quantnb.model_bundle/1"
WEIGHTS_FILE = "model.pt"
SCALER_FILE = "scaler.json"
METADATA_FILE = "config_metadata.yaml"
_MODEL_CLASSES: dict[str, type[nn.Module]] = {"HybridTCNLSTM": HybridTCNLSTM}
_RESERVED = ("format", "created_utc", "model", "files", "library_versions")


@dataclass(frozen=True)
class ModelBundle:
    """A trained model rebuilt from its bundle directory, ready for inference.

    Attributes
    ----------
    model : torch.nn.Module
        The model, in eval mode, on the requested device.
    scaler : FeatureScaler
        The scaler fitted on the training split.
    features : list of str
        Feature names in model input order (build them with ``quantnb.classifier.build_features``).
    metadata : dict
        The whole ``config_metadata.yaml`` (parameters, data span, label suffix, metrics, versions).
    path : pathlib.Path
        The bundle directory.
    """

    model: nn.Module
    scaler: FeatureScaler
    features: list[str]
    metadata: dict[str, Any]
    path: Path


def _plain(value: Any) -> Any:
    """Convert numpy, tuples, paths and datetimes to YAML-safe builtins, recursively."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (Path, dt.datetime, dt.date)):
        return value.isoformat() if not isinstance(value, Path) else str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise ConfigError(f"metadata: value {value!r} of type {type(value).__name__} cannot be written to YAML; "
                      "pass plain numbers, strings, lists and dicts")


def sha256_file(path: Path) -> str:
    """Return the SHA-256 of the file at ``path`` as 64 hex digits (read in 1 MiB chunks).

    Parameters
    ----------
    path : pathlib.Path
        A readable file.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    """Return the versions of python and of the libraries a bundle depends on (see ``quantnb.runs``)."""
    return package_versions()


def save_model_bundle(directory: str | os.PathLike[str], model: nn.Module, scaler: FeatureScaler,
                      metadata: Mapping[str, Any]) -> Path:
    """Write a self-contained model bundle: weights, scaler and ``config_metadata.yaml``.

    Files (each written atomically; the YAML last, holding the SHA-256 of the others, so a bundle
    with a YAML is complete): ``model.pt`` (the ``state_dict``, CPU tensors), ``scaler.json``
    (:meth:`FeatureScaler.to_dict`), ``config_metadata.yaml``: ``format``, ``created_utc``,
    ``model`` (class and constructor parameters, parameter count), ``files`` (names and SHA-256),
    ``features``, ``library_versions``, then every key of ``metadata``.

    Parameters
    ----------
    directory : str or os.PathLike
        Bundle directory, e.g. ``runs/<train_id>/model`` (created).
    model : torch.nn.Module
        A model with a ``config`` property of constructor arguments, e.g. :class:`HybridTCNLSTM`.
    scaler : FeatureScaler
        The scaler fitted on the training split; its feature names are the model's inputs.
    metadata : mapping
        What a later stage needs to know: e.g. ``seq_len``, ``label_suffix``, ``lookahead_min``,
        thresholds, ``params``, ``data_span``, ``metrics``. Plain values (numpy scalars, tuples,
        paths and datetimes are converted).

    Returns
    -------
    pathlib.Path
        The bundle directory.

    Raises
    ------
    ConfigError
        If the model class is unknown, the scaler does not match the model's input width, a key of
        ``metadata`` is reserved (``format, created_utc, model, files, library_versions``) or a
        ``features`` entry differs from the scaler's, or a value cannot be written to YAML.
    """
    name = type(model).__name__
    if name not in _MODEL_CLASSES or not hasattr(model, "config"):
        raise ConfigError(f"model: {name} cannot be bundled; supported: {sorted(_MODEL_CLASSES)}")
    params = dict(cast(dict[str, Any], model.config))
    if params.get("n_features") != len(scaler.feature_names):
        raise ConfigError(f"scaler: {len(scaler.feature_names)} features but the model takes "
                          f"{params.get('n_features')}; save the scaler the model was trained with")
    clash = [k for k in metadata if k in _RESERVED]
    if clash:
        raise ConfigError(f"metadata: keys {clash} are reserved for the bundle writer; rename them")
    if "features" in metadata and list(metadata["features"]) != scaler.feature_names:
        raise ConfigError("metadata: 'features' differs from the scaler's feature names; drop it or fix it")
    extra = _plain({k: v for k, v in metadata.items() if k != "features"})  # refuse bad values before writing
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / WEIGHTS_FILE) as tmp:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    scaler.save(out / SCALER_FILE)
    doc = {
        "format": BUNDLE_FORMAT,
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": {"class": name, "params": params,
                  "n_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)},
        "files": {"weights": {"name": WEIGHTS_FILE, "sha256": sha256_file(out / WEIGHTS_FILE)},
                  "scaler": {"name": SCALER_FILE, "sha256": sha256_file(out / SCALER_FILE)}},
        "features": scaler.feature_names,
        "library_versions": library_versions(),
        **extra,
    }
    atomic_write_text(out / METADATA_FILE, yaml.safe_dump(_plain(doc), sort_keys=False, allow_unicode=True))
    return out


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: missing; this is not a complete model bundle — re-run training") from e
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML ({e}); restore the file or re-run training") from e
    if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
        raise ConfigError(f"{path}: 'format' is {doc.get('format') if isinstance(doc, dict) else None!r}, "
                          f"expected {BUNDLE_FORMAT!r}")
    for key in ("model", "files", "features"):
        if key not in doc:
            raise ConfigError(f"{path}: key {key!r} is missing; re-save the bundle")
    return doc


def _checked_file(directory: Path, doc: dict[str, Any], role: str) -> Path:
    meta = Path(directory) / METADATA_FILE
    try:
        entry = doc["files"][role]
        path = directory / str(entry["name"])
        digest = str(entry["sha256"])
    except (KeyError, TypeError) as e:
        raise ConfigError(f"{meta}: files.{role} must give 'name' and 'sha256'; re-save the bundle") from e
    if not path.is_file():
        raise ConfigError(f"{path}: missing ({role} file of the bundle); copy the whole bundle directory")
    if sha256_file(path) != digest:
        raise ConfigError(f"{path}: SHA-256 differs from {meta} ({role} file replaced or corrupt); "
                          "restore the bundle as saved")
    return path


def load_model_bundle(directory: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> ModelBundle:
    """Rebuild a model, its scaler and metadata from a bundle written by :func:`save_model_bundle`.

    Parameters
    ----------
    directory : str or os.PathLike
        The bundle directory.
    device : str or torch.device
        Where to put the model.

    Returns
    -------
    ModelBundle
        The model is in eval mode.

    Raises
    ------
    ConfigError
        If a file is missing, unreadable, fails its SHA-256 check, or the files disagree (model class
        or parameters, feature list of YAML versus scaler, weights versus architecture); the message
        names the file.
    """
    d = Path(directory)
    if not d.is_dir():
        raise ConfigError(f"{d}: model bundle directory not found; pass the 'model' directory of a training run")
    doc = _read_metadata(d / METADATA_FILE)
    weights_path = _checked_file(d, doc, "weights")
    scaler = FeatureScaler.load(_checked_file(d, doc, "scaler"))
    if list(doc["features"]) != scaler.feature_names:
        raise ConfigError(f"{d / SCALER_FILE}: features {scaler.feature_names} differ from {METADATA_FILE}'s "
                          f"{doc['features']}; the files come from different runs")
    spec = doc["model"] if isinstance(doc["model"], dict) else {}
    cls = _MODEL_CLASSES.get(str(spec.get("class")))
    if cls is None or not isinstance(spec.get("params"), dict):
        raise ConfigError(f"{d / METADATA_FILE}: model.class {spec.get('class')!r} / model.params invalid; "
                          f"supported classes: {sorted(_MODEL_CLASSES)}")
    try:
        model = cls(**spec["params"])
    except (TypeError, ConfigError) as e:
        raise ConfigError(f"{d / METADATA_FILE}: model.params do not build a {spec.get('class')} ({e})") from e
    if getattr(model, "n_features", None) != len(scaler.feature_names):
        raise ConfigError(f"{d / METADATA_FILE}: model.params.n_features={spec['params'].get('n_features')} but "
                          f"{len(scaler.feature_names)} features are listed")
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise ConfigError(f"{weights_path}: weights do not fit model.params in {METADATA_FILE} ({e})") from e
    model.to(device).eval()
    return ModelBundle(model, scaler, list(scaler.feature_names), doc, d)
