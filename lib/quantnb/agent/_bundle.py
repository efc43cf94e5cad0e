"""Agent bundle: everything the live trader needs, in one directory."""

from __future__ import annotations

import datetime as dt
import shutil
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from loguru import logger
from stable_baselines3 import SAC

from quantnb.agent._classifier import CLASSIFIER_FEATURES, AgentFeatureStream, ClassifierSignal
from quantnb.agent._costs import FillModel
from quantnb.agent._incremental import IncrementalFeatures
from quantnb.agent._observation import PORTFOLIO_STATE_NAMES, ActionInterpreter, ObservationBuilder
from quantnb.agent._train_types import EnvSpec, SacParams, nest_flat_params
from quantnb.classifier import sha256_file
from quantnb.errors import ConfigError
from quantnb.features import FeatureScaler
from quantnb.runs import atomic_path, atomic_write_text, package_versions

CONFIG_FILE, SCALER_FILE, MODEL_FILE = "config_metadata.yaml", "scaler.json", "sac_model.zip"
CLASSIFIER_DIR = "classifier"
_FORMAT = "quantnb.rl.agent_bundle/2"
_FORMAT_1 = "quantnb.rl.agent_bundle/1"
#: Features whose definition changed with the feature layer: an agent bundle of format 1 using
#: them saw other numbers in training than it would see now, so it is refused.
_CHANGED_FEATURES = {
    "spread_bps_mean": "renamed spread_bps",
    "log_depth_10": "was ln(bid + ask depth), is now ln(1 + bid + ask depth)",
}
_ENV_KEYS = tuple(EnvSpec.model_fields)


@dataclass(frozen=True, init=False)
class AgentMetadata:
    """What the live trader must reproduce, and the provenance of the agent.

    Holds the environment and SAC settings as :class:`EnvSpec` and :class:`SacParams`
    (stored verbatim in the bundle); ``window``, ``fee_bps`` and the other environment
    figures are read from ``env``.

    Parameters
    ----------
    env : EnvSpec, optional
        The environment settings; built from the flat keyword arguments (``window``,
        ``fee_bps``, ``slippage_bps``, ``max_position_frac``, ``deadband_frac``,
        ``warmup_bars``, ``state_clip``, ``initial_equity_usd``, ...) when omitted.
    sac : SacParams, optional
        The SAC hyper-parameters (default :class:`SacParams`'s); ``sac_params`` (a dict) is accepted too.
    symbol, timeframe : str
        Instrument and bar interval trained on (e.g. ``"BTC-PERP"``, ``"1m"``).
    data_span : dict
        Training and evaluation spans (ISO strings).
    params : dict
        The stage's parameters.
    metrics : dict
        Evaluation metrics (``EvaluationResult.metrics_dict()``).
    feature_names : tuple of str
        Filled from the scaler by :func:`save_agent_bundle`.
    versions : dict
        Filled by :func:`save_agent_bundle`: python and library versions.
    classifier : dict
        Empty, or ``train_id`` and ``seq_len`` of the classifier whose probabilities the agent sees.
    **flat
        Flat environment fields, mapped by :func:`nest_flat_params` (the one mapping).

    Raises
    ------
    ConfigError
        If a value is invalid or a name unknown.
    """

    env: EnvSpec
    sac: SacParams
    symbol: str
    timeframe: str
    data_span: dict[str, Any]
    params: dict[str, Any]
    metrics: dict[str, Any]
    feature_names: tuple[str, ...]
    versions: dict[str, str]
    classifier: dict[str, Any]

    def __init__(self, *, env: EnvSpec | None = None, sac: SacParams | None = None, symbol: str = "",
                 timeframe: str = "", data_span: dict[str, Any] | None = None, params: dict[str, Any] | None = None,
                 metrics: dict[str, Any] | None = None, feature_names: Sequence[str] = (),
                 versions: dict[str, str] | None = None, classifier: dict[str, Any] | None = None,
                 sac_params: dict[str, Any] | None = None, **flat: Any) -> None:
        unknown = [k for k in flat if k not in _ENV_KEYS]
        if unknown:
            raise ConfigError(f"AgentMetadata: unknown fields {unknown}; environment fields are {list(_ENV_KEYS)}")
        nested = nest_flat_params({**flat, **({"env": env} if env is not None else {}),
                                   **({"sac": sac} if sac is not None else {})})
        sac_values = nested.get("sac") or dict(sac_params or {})
        values = {"env": EnvSpec.parse(dict(nested.get("env") or {})), "sac": SacParams.parse(dict(sac_values)),
                  "symbol": symbol, "timeframe": timeframe, "data_span": dict(data_span or {}),
                  "params": dict(params or {}), "metrics": dict(metrics or {}), "feature_names": tuple(feature_names),
                  "versions": dict(versions or {}), "classifier": dict(classifier or {})}
        for k, v in values.items():
            object.__setattr__(self, k, v)

    def replace(self, **changes: Any) -> AgentMetadata:
        """Return a copy with ``changes`` applied (same keywords as the constructor).

        Parameters
        ----------
        **changes
            Fields to change.
        """
        values = {f: getattr(self, f) for f in self.__dataclass_fields__}
        if any(k in _ENV_KEYS for k in changes):
            values["env"] = self.env.model_copy(update={k: changes.pop(k) for k in list(changes) if k in _ENV_KEYS})
        values.update(changes)
        return AgentMetadata(**values)

    window = property(lambda self: self.env.window, doc="Bars in the observation window.")
    fee_bps = property(lambda self: self.env.fee_bps, doc="Fill model fee, bps.")
    slippage_bps = property(lambda self: self.env.slippage_bps, doc="Fill model slippage, bps.")
    max_position_frac = property(lambda self: self.env.max_position_frac, doc="Largest |position| / equity.")
    deadband_frac = property(lambda self: self.env.deadband_frac, doc="Dead band of the action interpreter.")
    warmup_bars = property(lambda self: self.env.warmup_bars, doc="Indicator warm-up, bars.")
    state_clip = property(lambda self: self.env.state_clip, doc="Bound of the portfolio-state values.")
    initial_equity_usd = property(lambda self: self.env.initial_equity_usd, doc="Equity of each episode, USD.")
    sac_params = property(lambda self: self.sac.model_dump(mode="json"), doc="The SAC parameters as a dict.")

    def to_dict(self) -> dict[str, Any]:
        """Return the YAML-ready content (``env`` and ``sac`` verbatim)."""
        out = {f: getattr(self, f) for f in self.__dataclass_fields__}
        out["env"], out["sac"] = self.env.model_dump(mode="json"), self.sac.model_dump(mode="json")
        out["feature_names"] = list(self.feature_names)
        return out


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
    classifier : ClassifierSignal or None
        The classifier whose probabilities are the last three features, if the agent was trained with one.
    """

    directory: Path
    model: SAC
    scaler: FeatureScaler
    observation_builder: ObservationBuilder
    action_interpreter: ActionInterpreter
    fill_model: FillModel
    feature_names: tuple[str, ...]
    metadata: AgentMetadata
    classifier: ClassifierSignal | None = None

    @property
    def computed_features(self) -> tuple[str, ...]:
        """Features the bundle computes itself from the bars: its classifier's probabilities, if it carries one."""
        return tuple(f for f in self.feature_names if f in CLASSIFIER_FEATURES) if self.classifier is not None else ()

    def new_feature_stream(self) -> IncrementalFeatures | AgentFeatureStream:
        """Return a fresh live feature stream with the bundle's features, window and warm-up.

        Returns
        -------
        IncrementalFeatures or AgentFeatureStream
            The latter when the bundle has a classifier (its probabilities are computed bar by bar too).
        """
        m = self.metadata
        if self.classifier is None:
            return IncrementalFeatures(self.feature_names, window=m.window, warmup_bars=m.warmup_bars)
        return AgentFeatureStream(self.feature_names, window=m.window, warmup_bars=m.warmup_bars,
                                  classifier=self.classifier)


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


def save_agent_bundle(directory: str | Path, model: SAC, scaler: FeatureScaler, metadata: AgentMetadata, *,
                      classifier_dir: str | Path | None = None) -> Path:
    """Write ``sac_model.zip``, ``scaler.json`` and, last, ``config_metadata.yaml`` into ``directory``.

    Every file is written atomically and the YAML last, so a directory with a YAML is complete.
    The YAML's ``sha256`` maps each other file of the bundle (classifier files included, paths
    relative to ``directory``) to its SHA-256; :func:`load_agent_bundle` refuses a mismatch.
    With ``classifier_dir``, that model bundle is copied to ``classifier/`` so the agent
    bundle stays self-contained (the live trader computes the probabilities from it).

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
    classifier_dir : str or Path, optional
        The classifier's model bundle (a training run's ``model`` directory), when the
        features end with :data:`CLASSIFIER_FEATURES`.

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
    if (classifier_dir is None) == bool(set(CLASSIFIER_FEATURES) & set(scaler.feature_names)):
        raise ConfigError(f"features {list(scaler.feature_names)}: pass classifier_dir exactly when the features "
                          f"include the classifier's {list(CLASSIFIER_FEATURES)}")
    with atomic_path(out / MODEL_FILE) as tmp, open(tmp, "wb") as fh:
        model.save(fh)
    scaler.save(out / SCALER_FILE)
    files = {"model": MODEL_FILE, "scaler": SCALER_FILE}
    if classifier_dir is not None:
        dest = out / CLASSIFIER_DIR
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(Path(classifier_dir), dest)
        files["classifier"] = CLASSIFIER_DIR
    digests = {rel: sha256_file(out / rel) for rel in _bundle_files(out, classifier_dir is not None)}
    meta = metadata.to_dict()
    meta.update(feature_names=list(scaler.feature_names), versions=package_versions())
    doc = {
        "format": _FORMAT,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "files": files,
        "sha256": digests,
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
    if not isinstance(doc, dict) or doc.get("format") not in (_FORMAT, _FORMAT_1):
        raise ConfigError(f"{path}: not a quantnb agent bundle (format {_FORMAT!r} or {_FORMAT_1!r} expected); "
                          "re-export the bundle")
    if doc["format"] == _FORMAT_1:
        changed = {f: why for f, why in _CHANGED_FEATURES.items() if f in (doc.get("feature_names") or [])}
        if changed:
            raise ConfigError(
                f"{path}: this agent (bundle format {_FORMAT_1!r}) was trained on features whose definition has "
                f"changed since ({'; '.join(f'{f} {why}' for f, why in changed.items())}), so it would see other "
                "numbers than in training; retrain it with the agent notebook (same parameters) and trade the new "
                "bundle")
    return doc


def _metadata(doc: dict[str, Any], path: Path) -> AgentMetadata:
    try:
        if doc["format"] == _FORMAT_1:  # flat environment fields, sac_params: mapped by nest_flat_params
            flat = {k: doc[k] for k in _ENV_KEYS if k in doc}
            return AgentMetadata(**flat, sac_params=doc.get("sac_params") or {}, symbol=doc.get("symbol", ""),
                                 timeframe=doc.get("timeframe", ""), data_span=doc.get("data_span"),
                                 params=doc.get("params"), metrics=doc.get("metrics"),
                                 feature_names=tuple(doc["feature_names"]), versions=doc.get("versions"))
        return AgentMetadata(env=EnvSpec.parse(doc["env"]), sac=SacParams.parse(doc["sac"]),
                             symbol=doc.get("symbol", ""), timeframe=doc.get("timeframe", ""),
                             data_span=doc.get("data_span"), params=doc.get("params"), metrics=doc.get("metrics"),
                             feature_names=tuple(doc["feature_names"]), versions=doc.get("versions"),
                             classifier=doc.get("classifier"))
    except (KeyError, TypeError, ConfigError) as e:
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
        ``sac_model.zip`` is missing, unreadable or truncated, a file's SHA-256 differs from the
        one recorded at save time (see :func:`check_bundle_files`), or they disagree (feature
        list, window, observation or action shape).
    """
    d = Path(directory)
    if not d.is_dir():
        raise ConfigError(f"{d}: agent bundle directory not found; check train_id or run the agent notebook first")
    cfg_path = d / CONFIG_FILE
    doc = _read_config(cfg_path)
    meta = _metadata(doc, cfg_path)
    scaler_path, model_path = d / SCALER_FILE, d / MODEL_FILE
    if not model_path.is_file():
        raise ConfigError(f"{model_path} is missing; copy sac_model.zip from the training run or re-export the bundle")
    check_bundle_files(d, doc)
    scaler = FeatureScaler.load(scaler_path)
    if tuple(scaler.feature_names) != meta.feature_names:
        raise ConfigError(
            f"{scaler_path} lists features {list(scaler.feature_names)} but {cfg_path} lists "
            f"{list(meta.feature_names)}; the files come from different runs: copy all three from one training run"
        )
    try:
        model = SAC.load(model_path, device="cpu")
    except (ValueError, KeyError, OSError, RuntimeError, EOFError, AssertionError, zipfile.BadZipFile) as e:
        # stable-baselines3 asserts on a zip without data (a truncated file): name the file, whatever it raised
        raise ConfigError(f"{model_path}: cannot load the SAC model ({type(e).__name__}: {e}); the file is truncated "
                          "or corrupt — copy it again from the training run or re-export the bundle") from e
    try:
        builder = ObservationBuilder(meta.feature_names, meta.window, scaler, state_clip=meta.state_clip)
        interpreter = ActionInterpreter(meta.max_position_frac, meta.deadband_frac)
        fill_model = meta.env.cost_setup(meta.symbol)["fill_model"]
    except ConfigError as e:
        raise ConfigError(f"{cfg_path}: {e}") from e
    if tuple(model.observation_space.shape or ()) != (builder.n_obs,) or tuple(model.action_space.shape or ()) != (1,):
        raise ConfigError(
            f"{model_path} expects observations {model.observation_space.shape} and actions "
            f"{model.action_space.shape}, but {cfg_path} gives ({builder.n_obs},) and (1,); the files come from "
            "different runs: copy all three from one training run"
        )
    classifier = None
    if any(f in CLASSIFIER_FEATURES for f in meta.feature_names):
        classifier = ClassifierSignal.load(d / CLASSIFIER_DIR)
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
        classifier=classifier,
    )


def _bundle_files(directory: Path, with_classifier: bool) -> list[str]:
    """Return the bundle's files whose SHA-256 is recorded, relative to ``directory``, sorted."""
    files = [MODEL_FILE, SCALER_FILE]
    if with_classifier:
        files += [p.relative_to(directory).as_posix() for p in (directory / CLASSIFIER_DIR).rglob("*") if p.is_file()]
    return sorted(files)


def check_bundle_files(directory: str | Path, doc: dict[str, Any]) -> None:
    """Compare every file of an agent bundle with the SHA-256 recorded in its ``config_metadata.yaml``."""
    d = Path(directory)
    cfg_path = d / CONFIG_FILE
    digests = doc.get("sha256")
    if digests is None:
        logger.warning("{}: this agent bundle records no SHA-256 of its files (saved by an older quantnb), so edits "
                       "to scaler.json or sac_model.zip cannot be detected; re-export or retrain it to have them "
                       "checked", cfg_path)
        return
    if not isinstance(digests, dict) or not digests or not all(isinstance(v, str) for v in digests.values()):
        raise ConfigError(f"{cfg_path}: 'sha256' must map each bundle file to its SHA-256; re-export the bundle")
    for rel, digest in digests.items():
        path = d / str(rel)
        if ".." in Path(str(rel)).parts or not path.is_file():
            raise ConfigError(f"{path}: listed in {cfg_path} but missing; copy the whole bundle directory from the "
                              "training run")
        if sha256_file(path) != digest:
            raise ConfigError(f"{path}: SHA-256 differs from the one recorded in {cfg_path} when the bundle was saved "
                              "(the file was edited, replaced or truncated); restore the bundle as saved by the "
                              "training run or re-export it — an edited file changes what the agent sees")


def _warn_versions(meta: AgentMetadata, path: Path) -> None:
    now = package_versions()
    for lib in ("stable-baselines3", "torch"):
        saved = meta.versions.get(lib)
        if saved and saved != now.get(lib):
            logger.warning("{}: trained with {} {}, running {}; predictions may differ", path, lib, saved, now.get(lib))
