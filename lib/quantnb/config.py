"""Stage parameters: one frozen pydantic model per stage, validating notebook, YAML and Python calls alike."""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import types
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationError

from quantnb.errors import ConfigError

__all__ = ["StageParams", "load_yaml_params"]

_IPYTHON_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "open"})
_URL_PASSWORD = re.compile(r"(://[^/@\s:]*:)[^/@\s]*@|((?<=[?&])password=)[^&\s'\"]*", re.IGNORECASE)  # echoed inputs


class StageParams(BaseModel):
    """Base of every stage's parameters: frozen, unknown names refused, each field described.

    Subclasses set ``stage`` and may override :meth:`run_suffix`. Fields listed in
    ``execution_fields`` (how to run, not what to compute) are left out of the config
    hash, so a resumed run may change them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: ClassVar[str] = "stage"
    execution_fields: ClassVar[frozenset[str]] = frozenset(
        {"resume", "run_id", "console_level", "third_party_levels", "rotation_mb",
         "retention_days", "n_workers", "project_dir"}
    )

    resume: bool = Field(False, description="Skip the items the checkpoint lists as done.")
    run_id: str | None = Field(
        None, description="Run to continue (set by `quantnb run --resume`); None starts a new run."
    )
    console_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = Field(
        "INFO", description="Lowest level echoed to the console or notebook; None for silence."
    )
    third_party_levels: dict[str, str] = Field(
        default_factory=dict,
        description="Per-logger thresholds for stdlib loggers, e.g. {'ccxt': 'INFO'}; WARNING otherwise.",
    )
    rotation_mb: PositiveFloat = Field(50.0, description="Session log size that triggers rotation, MB.")
    retention_days: PositiveFloat = Field(7.0, description="Days rotated logs are kept.")
    project_dir: str | None = Field(
        None, description="Project directory holding runs/, logs/, data/; found from the cwd if None."
    )

    def run_suffix(self) -> str:
        """Return a short readable summary of the config, used in run ids and log names."""
        return "default"

    def config_hash(self) -> str:
        """Return the first 12 hex digits of SHA-256 of the canonical computing parameters."""
        payload = self.model_dump(mode="json", exclude=set(self.execution_fields))
        canon = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(f"{self.stage}:{canon}".encode()).hexdigest()[:12]

    @classmethod
    def parse(cls, values: dict[str, Any], *, source: str = "parameters") -> Self:
        """Validate ``values``, translating pydantic's errors into one clear :class:`ConfigError`.

        Parameters
        ----------
        values : dict
            Parameter names to values.
        source : str
            Where the values came from (a file name, "notebook"), quoted in the error.

        Returns
        -------
        StageParams
            The validated, frozen parameters.

        Raises
        ------
        ConfigError
            Naming every unknown parameter (with the closest known name) and every
            ill-typed or out-of-range value.
        """
        from quantnb.runlog._secrets import SecretMasker  # runlog imports this module

        try:
            params = cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(SecretMasker()(cls._explain(exc, source))) from None
        params._refuse_secrets(source)
        return params

    def _refuse_secrets(self, source: str) -> None:
        from quantnb.runlog._secrets import SecretMasker

        masker = SecretMasker()
        if not masker:
            return
        for name, value in self.model_dump(mode="json").items():
            if masker(json.dumps(value)) != json.dumps(value):
                raise ConfigError(
                    f"{type(self).__name__} ({source}): parameter '{name}' carries the value of a secret "
                    "environment variable; exchange keys are read from the environment only, never passed "
                    "as parameters"
                )

    @classmethod
    def _explain(cls, exc: ValidationError, source: str) -> str:
        known = sorted(cls.model_fields)
        lines = [f"{cls.__name__} ({source}): {exc.error_count()} invalid parameter(s)"]
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "<root>"
            if err["type"] == "extra_forbidden":
                close = difflib.get_close_matches(str(err["loc"][0]), known, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(known)}"
                lines.append(f"  - unknown parameter '{name}'{hint}")
            else:
                shown = _URL_PASSWORD.sub(lambda m: f"{m.group(1) or m.group(2)}***" + ("@" if m.group(1) else ""),
                                          repr(err.get("input")))
                lines.append(f"  - {name}={shown}: {err['msg']}")
        return "\n".join(lines)

    @classmethod
    def from_namespace(cls, namespace: dict[str, Any]) -> Self:
        """Build parameters from a notebook's globals (the parameters cell plus papermill's injection).

        Every public global that is not a module, class or function is taken as a
        parameter, so a misspelt name injected by papermill (which only warns) is refused.

        Raises
        ------
        ConfigError
            As :meth:`parse`.
        """
        values = {
            k: v
            for k, v in namespace.items()
            if not k.startswith("_")
            and k not in _IPYTHON_NAMES
            and not isinstance(v, types.ModuleType | type)
            and not callable(v)
        }
        return cls.parse(values, source="notebook parameters")


def load_yaml_params(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of parameter names to values.

    Raises
    ------
    ConfigError
        If the file is missing, not YAML, or not a mapping.
    """
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: parameter file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of parameter names to values, got {type(data).__name__}")
    return data
