"""Stage parameters: one frozen pydantic model per stage, validating notebook, YAML and Python calls alike."""

from __future__ import annotations

import ast
import difflib
import hashlib
import json
import os
import re
import reprlib
import types
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from quantnb._paths import project_root
from quantnb._secrets import SecretMasker
from quantnb._yaml import safe_load_bounded
from quantnb.errors import ConfigError

__all__ = ["StageParams", "OutputDir", "resolve_output_dir", "load_yaml_params"]

_IPYTHON_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "open"})
_URL_PASSWORD = re.compile(r"(://[^/@\s:]*:)[^/@\s]*@|((?<=[?&])password=)[^&\s'\"]*", re.IGNORECASE)  # echoed inputs
_REPR = reprlib.Repr()  # a value quoted in an error: a few levels and items (keywords only from Python 3.12)
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 3, 8, 8, 400, 200
_SHOWN_CHARS = 200  # an error quotes at most this much of a value


def _short_repr(text: str) -> str:
    """``text`` cut to :data:`_SHOWN_CHARS` characters, saying how long it was."""
    return text if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]}… ({len(text):,} chars)"


# Parameters naming a run or a study: one path component, never a path.
_ID_FIELDS = frozenset({"run_id", "train_id", "target_run_id", "study_name"})
# The project's own folders: a stage's output folder may not be one of them or lie inside one.
_SPINE_DIRS = ("runs", "logs")


def check_path_component(name: str, value: str | None) -> str | None:
    """Return why ``value`` is not a safe single path component (a run id, a study name), or None.

    Refused: empty, ``.``/``..``, a path separator, a NUL byte, a leading ``-`` or ``~``.

    Parameters
    ----------
    name : str
        The parameter's name, quoted in the message.
    value : str or None
        The value; None is accepted (unset).
    """
    if value is None:
        return None
    if (not value or value in (".", "..") or "/" in value or "\\" in value or "\x00" in value
            or value[0] in "-~"):
        return (f"{name}={value!r} is not a plain name (it must not contain '/', be '..' or start with "
                f"'-' or '~', which would reach outside the project); pass the id as `quantnb runs` lists it")
    return None


def resolve_output_dir(value: str | os.PathLike[str], root: str | os.PathLike[str]) -> Path:
    """Return the absolute folder an output-folder parameter names.

    An absolute value (``~`` expanded) is taken as it is, anywhere on the machine; a
    relative one is taken from the project directory ``root`` (never from the cwd, which
    is ``notebooks/`` in JupyterLab); a ``..`` the user wrote is kept. The result is
    normalised, not resolved: symbolic links the user put in the path are followed.

    Parameters
    ----------
    value : str or os.PathLike
        The folder as given, e.g. ``"data/processed"`` or ``"/mnt/data/processed"``.
    root : str or os.PathLike
        The project directory.
    """
    path = Path(value).expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else Path(root) / path))


def check_output_dir(name: str, value: str | None, project_dir: str | None = None) -> str | None:
    """Return why ``value`` cannot be a stage's output folder, or None.

    Any absolute folder and any relative one (taken from the project, ``..`` included)
    is accepted; refused are an empty value, a NUL byte, and the project directory
    itself or its ``runs/`` and ``logs/`` folders (or a folder inside them), which belong
    to the run spine.

    Parameters
    ----------
    name : str
        The parameter's name, quoted in the message.
    value : str or None
        The folder as given; None is accepted (unset).
    project_dir : str or None
        Project root; None finds it from the current directory.
    """
    if value is None:
        return None
    if not value.strip() or "\x00" in value:
        return f"{name}={value!r} is not a folder; give a path, absolute or relative to the project"
    root = Path(os.path.normpath(project_root(project_dir)))
    target = resolve_output_dir(value, root)
    if target == root or any(target.is_relative_to(root / d) for d in _SPINE_DIRS):
        return (f"{name}={value!r} resolves to {target}, the project directory or inside its runs/ or logs/ "
                "folder, which hold the runs' own files; give another folder (e.g. data/<name>, or an "
                "absolute path)")
    return None


def _validate_output_dir(value: str, info: ValidationInfo) -> str:
    problem = check_output_dir(info.field_name or "output folder", value, (info.data or {}).get("project_dir"))
    if problem:
        raise ValueError(problem)
    return value


#: Type of every parameter naming a folder a stage writes to (ETL, labelling, record, download...):
#: any absolute path, or a path relative to the project; resolve it with :func:`resolve_output_dir`.
OutputDir = Annotated[str, AfterValidator(_validate_output_dir)]


def cross_field_problems(values: dict[str, Any]) -> list[str]:
    """Return the cross-field rule violations among parameter ``values`` (empty if none).

    Rules: for every ``<x>_min`` with an ``<x>_max`` (both set), min <= max;
    ``train_frac + val_frac < 1``; ``threshold_short_frac < 0 < threshold_long_frac``.
    Each message names the parameters, their values and the fix.

    Parameters
    ----------
    values : dict of str to Any
        Parameter names and values as given (unset parameters may be absent or None).
    """
    problems = []
    for name, lo in values.items():
        if not name.endswith("_min"):
            continue
        hi_name = name.removesuffix("_min") + "_max"
        hi = values.get(hi_name)
        if isinstance(lo, int | float) and isinstance(hi, int | float) and lo > hi:
            problems.append(f"{name}={lo!r} > {hi_name}={hi!r}: the range is empty; "
                            f"set {name} <= {hi_name} (swap them?)")
    train, val = values.get("train_frac"), values.get("val_frac")
    if isinstance(train, int | float) and isinstance(val, int | float) and train + val >= 1:
        problems.append(f"train_frac={train!r} + val_frac={val!r} = {train + val:g} leaves no test split; "
                        "make train_frac + val_frac < 1")
    short, long_ = values.get("threshold_short_frac"), values.get("threshold_long_frac")
    if isinstance(short, int | float) and isinstance(long_, int | float) and not short < 0 < long_:
        problems.append(f"threshold_short_frac={short!r}, threshold_long_frac={long_!r}: need "
                        "threshold_short_frac < 0 < threshold_long_frac (a fall sells, a rise buys)")
    return problems


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

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Self:
        """Rules between fields, checked before any work, whatever the stage."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        problems = cross_field_problems(values)
        for name, value in values.items():
            if not isinstance(value, str):
                continue
            if name in _ID_FIELDS or name.endswith("_run_id"):
                problems += [p for p in [check_path_component(name, value)] if p]
        if problems:
            raise ValueError("\n  - ".join(problems))
        return self

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

        Raises
        ------
        ConfigError
            Naming every unknown parameter (with the closest known name) and every
            ill-typed or out-of-range value.
        """
        try:
            params = cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(SecretMasker()(cls._explain(exc, source))) from None
        params._refuse_secrets(source)
        return params

    def _refuse_secrets(self, source: str) -> None:
        masker = SecretMasker()
        if not masker:
            return
        for name, value in self.model_dump(mode="json").items():
            if masker(json.dumps(value)) != json.dumps(value):
                hint = ""
                if "notebook" in source:  # papermill wrote the output notebook before this cell
                    hint = (" If you passed it with papermill -p, quantnb's papermill hook masked it in the "
                            "output notebook; without that hook (quantnb not installed with pip install -e .) "
                            "the output notebook you named holds the value: delete that file.")
                raise ConfigError(
                    f"{type(self).__name__} ({source}): parameter '{name}' carries the value of a secret "
                    "environment variable; exchange keys are read from the environment only, never passed "
                    "as parameters." + hint
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
            elif not err["loc"]:  # a cross-field rule: its message names the fields and values
                lines.append(f"  - {str(err['msg']).removeprefix('Value error, ')}")
            else:
                shown = _short_repr(_URL_PASSWORD.sub(
                    lambda m: f"{m.group(1) or m.group(2)}***" + ("@" if m.group(1) else ""),
                    _REPR.repr(err.get("input"))))
                lines.append(f"  - {name}={shown}: {err['msg']}")
        return "\n".join(lines)

    @classmethod
    def from_namespace(cls, namespace: dict[str, Any]) -> Self:
        """Build parameters from a notebook's parameters cell (and the cell papermill injects).

        In IPython (``namespace`` holds the input history ``In``), only the names assigned
        by the parameters cells that ran just before the calling cell are taken: the
        cells of plain literal assignments, walking back from the calling cell, that set a
        field of the model or that papermill injected (``# Parameters``). So ``result``,
        ``params`` or any exploratory variable of an earlier Run All are ignored, while a
        misspelt name in the parameters cell or injected by papermill (which only warns)
        is refused. Without a history (a plain dict, a script), every public global that
        is not a module, class or function is taken.

        Parameters
        ----------
        namespace : dict
            ``globals()`` of the notebook.

        Raises
        ------
        ConfigError
            As :meth:`parse`; shown in a notebook as one message without a traceback.
        """
        _install_notebook_error_display()
        names = _parameter_cell_names(namespace.get("In"), set(cls.model_fields))
        if names is None:
            values = {
                k: v
                for k, v in namespace.items()
                if not k.startswith("_")
                and k not in _IPYTHON_NAMES
                and not isinstance(v, types.ModuleType | type)
                and not callable(v)
            }
        else:
            values = {k: namespace[k] for k in sorted(names) if k in namespace}
        return cls.parse(values, source="notebook parameters")


_PAPERMILL_MARKER = "# Parameters"
_MAX_CELLS_BACK = 50


def _cell_assignments(source: str) -> set[str] | None:
    """Names a cell of plain assignments sets (no calls), or None if it does anything else."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if not all(isinstance(t, ast.Name) for t in targets):
                return None
            if node.value is not None and any(isinstance(n, ast.Call | ast.Lambda | ast.Await)
                                              for n in ast.walk(node.value)):
                return None
            names.update(t.id for t in targets if isinstance(t, ast.Name))
            continue
        return None
    return names


def _parameter_cell_names(history: Any, fields: set[str]) -> set[str] | None:
    """Names set by the parameters cells run just before the calling cell; None without history."""
    if not isinstance(history, list) or len(history) < 2:
        return None
    names: set[str] = set()
    for source in reversed(history[-1 - _MAX_CELLS_BACK:-1]):  # history[-1] is the calling cell
        if not isinstance(source, str):
            break
        if not source.strip():
            continue
        assigned = _cell_assignments(source)
        if assigned is None:
            break
        if source.lstrip().startswith(_PAPERMILL_MARKER) or assigned & fields:
            names |= assigned
    return names or set(fields)


def _install_notebook_error_display() -> None:
    """In IPython, show a ConfigError as one clear message instead of a library traceback."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is None or bool(getattr(ip, "custom_exceptions", ())):  # ours already, or someone else's: leave it
        return

    def show(shell: Any, etype: type[BaseException], value: BaseException, tb: Any,
             tb_offset: int | None = None) -> list[str]:
        text = f"\x1b[1;31m{etype.__name__}\x1b[0m: {value}"
        shell._showtraceback(etype, value, [text])  # an error output: the cell (and papermill) still fail
        return []

    ip.set_custom_exc((ConfigError,), show)


def load_yaml_params(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of parameter names to values.

    Parameters
    ----------
    path : str or Path
        A YAML file holding one mapping of parameter names to values.

    Raises
    ------
    ConfigError
        If the file is missing, not YAML, or not a mapping.
    """
    p = Path(path)
    try:
        data = safe_load_bounded(p.read_text(encoding="utf-8"), source=str(p))  # refuses alias bombs
    except FileNotFoundError:
        raise ConfigError(f"{p}: parameter file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of parameter names to values, got {type(data).__name__}")
    return data
