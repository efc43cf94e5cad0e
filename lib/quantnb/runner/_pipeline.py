from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from quantnb._paths import project_root
from quantnb.config import load_yaml_params
from quantnb.errors import ConfigError
from quantnb.runner._execute import RunOutcome, resolve_params, run_stage
from quantnb.runs import fit_table, format_metrics, mark_dead_runs

# ${<step id>.run_id} or ${<step id>.outputs.<name>} (an output the step recorded in its run.json)
_REF = re.compile(r"\$\{([A-Za-z0-9_\-]+)\.(run_id|outputs\.[A-Za-z0-9_\-]+)\}")


@dataclasses.dataclass
class PipelineResult:
    """Outcomes of a pipeline's stages, in order; ``ok`` is False if one failed or was interrupted."""

    name: str
    outcomes: list[tuple[str, RunOutcome]]
    ok: bool

    def table(self, width: int | None = None) -> str:
        """Return a plain-text table of the steps (see :func:`quantnb.runs._monitor.fit_table`)."""
        rows = []
        for step_id, o in self.outcomes:
            duration = o.record.get("duration_s") or o.record.get("runner_duration_s") or ""
            outputs = "  ".join(f"{k}={v}" for k, v in (o.record.get("outputs") or {}).items())
            metrics = format_metrics(o.stage, o.record.get("metrics") or {}, width=80)
            rows.append((step_id, o.stage, o.status, f"{duration}", o.run_id, metrics, outputs))
        return fit_table(("step", "stage", "status", "duration_s", "run_id", "metrics", "outputs"), rows, width)


def _substitute(value: Any, done: dict[str, RunOutcome | None], where: str) -> Any:
    """Replace every ``${id.run_id}``/``${id.outputs.name}``; a step not run yet (None) gives a placeholder."""
    if isinstance(value, str):
        def repl(m: re.Match[str]) -> str:
            ref, attr = m.group(1), m.group(2)
            if ref not in done:
                raise ConfigError(f"{where}: {m.group(0)} refers to no earlier step (ids: {', '.join(done) or 'none'})")
            outcome = done[ref]
            if outcome is None:  # validating before anything runs: a plain name stands for the future value
                return f"{ref}_pending"
            if attr == "run_id":
                return outcome.run_id
            name = attr.removeprefix("outputs.")
            outputs = outcome.record.get("outputs") or {}
            if name not in outputs:
                raise ConfigError(f"{where}: {m.group(0)}: run {outcome.run_id} recorded no output {name!r} "
                                  f"(it recorded: {', '.join(outputs) or 'none'})")
            return str(outputs[name])
        return _REF.sub(repl, value)
    if isinstance(value, dict):
        return {k: _substitute(v, done, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, done, where) for v in value]
    return value


def _steps(config: str | Path, spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(step id, stage, raw params)`` of every step; refuse a malformed list or a repeated id."""
    steps = spec.get("stages")
    if not isinstance(steps, list) or not steps:
        raise ConfigError(f"{config}: 'stages' must be a non-empty list of {{stage, params}}")
    out: list[tuple[str, str, dict[str, Any]]] = []
    for n, step in enumerate(steps):
        if not isinstance(step, dict) or "stage" not in step:
            raise ConfigError(f"{config}: stages[{n}] needs a 'stage' key")
        step_id = str(step.get("id", step["stage"]))
        if any(step_id == s[0] for s in out):
            raise ConfigError(f"{config}: stages[{n}]: id {step_id!r} is used twice; give this step its own 'id'")
        params = step.get("params") or {}
        if not isinstance(params, dict):
            raise ConfigError(f"{config}: step {step_id!r} (stages[{n}]): 'params' must be a mapping")
        out.append((step_id, str(step["stage"]), params))
    return out


def _where(config: str | Path, n: int, step_id: str) -> str:
    return f"{config}, step {step_id!r} (stages[{n}])"


def validate_pipeline(config: str | Path, *, root: str | Path | None = None) -> list[tuple[str, str]]:
    """Check every step of a pipeline YAML before anything runs."""
    base = project_root(root)
    spec = load_yaml_params(config)
    steps = _steps(config, spec)
    done: dict[str, RunOutcome | None] = {}
    for n, (step_id, stage, raw) in enumerate(steps):
        where = _where(config, n, step_id)
        resolve_params(stage, overrides=_substitute(raw, done, where), root=base, source=where)
        done[step_id] = None
    return [(step_id, stage) for step_id, stage, _ in steps]


def run_pipeline(config: str | Path, *, root: str | Path | None = None) -> PipelineResult:
    """Run a pipeline YAML's stages in order (``${<id>.run_id}``, ``${<id>.outputs.<name>}``); stop at a failure."""
    # every step's parameters are validated before the first step runs (ConfigError)
    base = project_root(root)
    mark_dead_runs(base)  # runs whose processes died become interrupted in their run.json
    validate_pipeline(config, root=base)
    spec = load_yaml_params(config)
    name = str(spec.get("name", Path(config).stem))
    done: dict[str, RunOutcome | None] = {}
    outcomes: list[tuple[str, RunOutcome]] = []
    for n, (step_id, stage, raw) in enumerate(_steps(config, spec)):
        where = _where(config, n, step_id)
        outcome = run_stage(stage, _substitute(raw, done, where), root=base, source=where)
        done[step_id] = outcome
        outcomes.append((step_id, outcome))
        if outcome.status in ("failed", "interrupted"):
            return PipelineResult(name, outcomes, False)
    return PipelineResult(name, outcomes, True)
