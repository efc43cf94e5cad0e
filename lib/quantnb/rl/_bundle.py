"""Agent bundle: everything the live trader needs, in one directory."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from loguru import logger
from stable_baselines3 import SAC

from quantnb.errors import ConfigError
from quantnb.features import FeatureScaler
from quantnb.rl._features import DEFAULT_WARMUP_BARS
from quantnb.rl._incremental import IncrementalFeatures
from quantnb.rl._observation import PORTFOLIO_STATE_NAMES, ActionInterpreter, ObservationBuilder
from quantnb.rl._portfolio import FillModel
from quantnb.runlog import atomic_path, atomic_write_text, package_versions

CONFIG_FILE, SCALER_FILE, MODEL_FILE = "config_metadata.yaml", "scaler.json", "sac_model.zip"
_FORMAT = "quantnb.rl.agent_bundle/1"


@dataclass(frozen=True)
class AgentMetadata:
    """What the live trader must reproduce, and the provenance of the agent.

    Attributes
    ----------
    window : int
        Bars in the observation window.
    fee_bps, slippage_bps : float
        Fill model used in training, basis points.
    max_position_frac, deadband_frac : float
        Action interpreter settings.
    warmup_bars : int
        Indicator warm-up of :func:`compute_features` / :class:`IncrementalFeatures`.
    state_clip : float
        Bound of the portfolio-state values in the observation.
    initial_equity_usd : float
        Equity of each training episode, USD.
    symbol, timeframe : str
        Instrument and bar interval trained on (e.g. ``"BTC-PERP"``, ``"1m"``).
    data_span : dict
        ``train_start``, ``train_end``, ``eval_start``, ``eval_end`` (ISO strings) and any extra.
    sac_params : dict
        ``SacParams.model_dump()``.
    params : dict
        The stage's parameters.
    metrics : dict
        Evaluation metrics (``EvaluationResult.metrics_dict()``).
    feature_names : tuple of str
        Filled from the scaler by :func:`save_agent_bundle`.
    versions : dict
        Filled by :func:`save_agent_bundle`: python and library versions.
    """

    window: int
    fee_bps: float
    slippage_bps: float
    max_position_frac: float
    deadband_frac: float = 0.0
    warmup_bars: int = DEFAULT_WARMUP_BARS
    state_clip: float = 10.0
    initial_equity_usd: float = 10_000.0
    symbol: str = ""
    timeframe: str = ""
    data_span: dict[str, Any] = field(default_factory=dict)
    sac_params: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    feature_names: tuple[str, ...] = ()
    versions: dict[str, str] = field(default_factory=dict)


@dataclass
class AgentBundle:
    """A loaded agent: model plus the exact observation and action mapping it was trained with.

    Attributes
    ----------
    directory : Path
    model : stable_baselines3.SAC
        Loaded on CPU, no environment attached; use ``model.predict(obs, deterministic=True)``.
    scaler : FeatureScaler
    observation_builder : ObservationBuilder
    action_interpreter : ActionInterpreter
    fill_model : FillModel
        The training fill model (for the paper broker).
    feature_names : tuple of str
    metadata : AgentMetadata
    """

    directory: Path
    model: SAC
    scaler: FeatureScaler
    observation_builder: ObservationBuilder
    action_interpreter: ActionInterpreter
    fill_model: FillModel
    feature_names: tuple[str, ...]
    metadata: AgentMetadata

    def new_feature_stream(self) -> IncrementalFeatures:
        """Return fresh :class:`IncrementalFeatures` with the bundle's features, window and warm-up."""
        m = self.metadata
        return IncrementalFeatures(self.feature_names, window=m.window, warmup_bars=m.warmup_bars)


def _plain(obj: Any) -> Any:
    """Convert numpy scalars, tuples, datetimes and paths to YAML-safe builtins."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (dt.datetime, dt.date, Path)):
        return str(obj)
    return obj


def save_agent_bundle(directory: str | Path, model: SAC, scaler: FeatureScaler, metadata: AgentMetadata) -> Path:
    """Write ``sac_model.zip``, ``scaler.json`` and, last, ``config_metadata.yaml`` into ``directory``.

    Every file is written atomically and the YAML last, so a directory with a YAML is complete.

    Parameters
    ----------
    directory : str or Path
        Usually ``runs/<train_id>/`` (created).
    model : stable_baselines3.SAC
        Trained model.
    scaler : FeatureScaler
        The scaler fitted on the training period; its feature list is the bundle's.
    metadata : AgentMetadata
        Settings and provenance; ``feature_names`` and ``versions`` are filled in here.

    Returns
    -------
    Path
        The ``config_metadata.yaml`` written.

    Raises
    ------
    ConfigError
        If the model's observation size is not ``window * n_features + 3``.
    OSError
        If a file cannot be written.
    """
    out = Path(directory)
    n_obs = metadata.window * len(scaler.feature_names) + len(PORTFOLIO_STATE_NAMES)
    if tuple(model.observation_space.shape or ()) != (n_obs,):
        raise ConfigError(
            f"model observations have shape {model.observation_space.shape}, but window={metadata.window} and "
            f"{len(scaler.feature_names)} scaler features give ({n_obs},); "
            "save the scaler and window it was trained with"
        )
    with atomic_path(out / MODEL_FILE) as tmp, open(tmp, "wb") as fh:
        model.save(fh)
    scaler.save(out / SCALER_FILE)
    meta = asdict(metadata)
    meta.update(feature_names=list(scaler.feature_names), versions=package_versions())
    doc = {
        "format": _FORMAT,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "files": {"model": MODEL_FILE, "scaler": SCALER_FILE},
        "observation": {"n_obs": n_obs, "portfolio_state": list(PORTFOLIO_STATE_NAMES)},
        **meta,
    }
    path = atomic_write_text(out / CONFIG_FILE, yaml.safe_dump(_plain(doc), sort_keys=False, allow_unicode=True))
    logger.info("rl/bundle saved dir={} n_features={} window={}", out, len(scaler.feature_names), metadata.window)
    return path


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(
            f"{path} is missing; the bundle is incomplete or this is not a training run directory: "
            "re-run the agent notebook (it writes the bundle) or point train_id at a finished run"
        )
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e}); restore it from the training run") from e
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise ConfigError(f"{path}: not a quantnb agent bundle (format {_FORMAT!r} expected); re-export the bundle")
    return doc


def _metadata(doc: dict[str, Any], path: Path) -> AgentMetadata:
    names = {f for f in AgentMetadata.__dataclass_fields__}
    try:
        kwargs = {k: doc[k] for k in names if k in doc}
        kwargs["feature_names"] = tuple(doc["feature_names"])
        return AgentMetadata(**kwargs)
    except (KeyError, TypeError) as e:
        raise ConfigError(f"{path}: missing or malformed field {e}; re-export the bundle") from e


def load_agent_bundle(directory: str | Path) -> AgentBundle:
    """Load and cross-check a bundle written by :func:`save_agent_bundle`.

    Parameters
    ----------
    directory : str or Path
        The bundle directory (``runs/<train_id>/``).

    Returns
    -------
    AgentBundle

    Raises
    ------
    ConfigError
        Naming the file and the fix, if ``config_metadata.yaml``, ``scaler.json`` or
        ``sac_model.zip`` is missing or unreadable, or they disagree (feature list, window,
        observation or action shape).
    """
    d = Path(directory)
    if not d.is_dir():
        raise ConfigError(f"{d}: agent bundle directory not found; check train_id or run the agent notebook first")
    cfg_path = d / CONFIG_FILE
    doc = _read_config(cfg_path)
    meta = _metadata(doc, cfg_path)
    scaler_path, model_path = d / SCALER_FILE, d / MODEL_FILE
    scaler = FeatureScaler.load(scaler_path)
    if tuple(scaler.feature_names) != meta.feature_names:
        raise ConfigError(
            f"{scaler_path} lists features {list(scaler.feature_names)} but {cfg_path} lists "
            f"{list(meta.feature_names)}; the files come from different runs: copy all three from one training run"
        )
    if not model_path.is_file():
        raise ConfigError(f"{model_path} is missing; copy sac_model.zip from the training run or re-export the bundle")
    try:
        model = SAC.load(model_path, device="cpu")
    except (ValueError, KeyError, OSError, RuntimeError) as e:
        raise ConfigError(f"{model_path}: cannot load the SAC model ({e}); re-export the bundle") from e
    try:
        builder = ObservationBuilder(meta.feature_names, meta.window, scaler, state_clip=meta.state_clip)
        interpreter = ActionInterpreter(meta.max_position_frac, meta.deadband_frac)
        fill_model = FillModel(meta.fee_bps, meta.slippage_bps)
    except ConfigError as e:
        raise ConfigError(f"{cfg_path}: {e}") from e
    if tuple(model.observation_space.shape or ()) != (builder.n_obs,) or tuple(model.action_space.shape or ()) != (1,):
        raise ConfigError(
            f"{model_path} expects observations {model.observation_space.shape} and actions "
            f"{model.action_space.shape}, but {cfg_path} gives ({builder.n_obs},) and (1,); the files come from "
            "different runs: copy all three from one training run"
        )
    _warn_versions(meta, cfg_path)
    return AgentBundle(
        directory=d,
        model=model,
        scaler=scaler,
        observation_builder=builder,
        action_interpreter=interpreter,
        fill_model=fill_model,
        feature_names=meta.feature_names,
        metadata=meta,
    )


def _warn_versions(meta: AgentMetadata, path: Path) -> None:
    now = package_versions()
    for lib in ("stable-baselines3", "torch"):
        saved = meta.versions.get(lib)
        if saved and saved != now.get(lib):
            logger.warning("{}: trained with {} {}, running {}; predictions may differ", path, lib, saved, now.get(lib))
