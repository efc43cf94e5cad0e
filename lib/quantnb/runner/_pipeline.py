from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from quantnb._paths import project_root
from quantnb.config import load_yaml_params
from quantnb.errors import ConfigError
from quantnb.runlog._monitor import format_metrics
from quantnb.runlog._record import mark_dead_runs
from quantnb.runner._execute import RunOutcome, run_stage

_REF = re.compile(r"\$\{([A-Za-z0-9_\-]+)\.run_id\}")


@dataclasses.dataclass
class PipelineResult:
    """Outcomes of a pipeline's stages, in order; ``ok`` is False if one failed or was interrupted."""

    name: str
    outcomes: list[tuple[str, RunOutcome]]
    ok: bool

    def table(self) -> str:
        """Return a plain-text summary table: step, stage, status, duration, metrics, outputs."""
        rows = [("step", "stage", "status", "duration_s", "run_id | metrics | outputs")]
        for step_id, o in self.outcomes:
            duration = o.record.get("duration_s") or o.record.get("runner_duration_s") or ""
            outputs = ", ".join(f"{k}={v}" for k, v in (o.record.get("outputs") or {}).items())
            metrics = format_metrics(o.stage, o.record.get("metrics") or {}, width=80)
            tail = o.run_id + (f" | {metrics}" if metrics else "") + (f" | {outputs}" if outputs else "")
            rows.append((step_id, o.stage, o.status, f"{duration}", tail))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = []
        for n, r in enumerate(rows):
            lines.append("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])
            if n == 0:
                lines.append("-" * (sum(widths) + 8 + 40))
        return "\n".join(lines)


def _substitute(value: Any, run_ids: dict[str, str], step: str) -> Any:
    if isinstance(value, str):
        def repl(m: re.Match[str]) -> str:
            ref = m.group(1)
            if ref not in run_ids:
                raise ConfigError(f"pipeline step {step!r}: ${{{ref}.run_id}} refers to no earlier step")
            return run_ids[ref]
        return _REF.sub(repl, value)
    if isinstance(value, dict):
        return {k: _substitute(v, run_ids, step) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, run_ids, step) for v in value]
    return value


def run_pipeline(config: str | Path, *, root: str | Path | None = None) -> PipelineResult:
    """Run the stages listed in a pipeline YAML in order; stop at the first failure.

    The file holds ``name`` and ``stages``, a list of ``{stage, id (optional), params}``.
    A parameter value may refer to an earlier step's run as ``${<id>.run_id}``.

    Parameters
    ----------
    config : str or pathlib.Path
        Pipeline YAML (e.g. ``configs/demo.yaml``).
    root : str or pathlib.Path, optional
        Project directory.

    Returns
    -------
    PipelineResult

    Raises
    ------
    ConfigError
        If the file is malformed; each step's parameters are validated when it starts.
    """
    base = project_root(root)
    mark_dead_runs(base)  # runs whose processes died become interrupted in their run.json
    spec = load_yaml_params(config)
    steps = spec.get("stages")
    if not isinstance(steps, list) or not steps:
        raise ConfigError(f"{config}: 'stages' must be a non-empty list of {{stage, params}}")
    run_ids: dict[str, str] = {}
    outcomes: list[tuple[str, RunOutcome]] = []
    for n, step in enumerate(steps):
        if not isinstance(step, dict) or "stage" not in step:
            raise ConfigError(f"{config}: stages[{n}] needs a 'stage' key")
        step_id = str(step.get("id", step["stage"]))
        params = _substitute(step.get("params") or {}, run_ids, step_id)
        outcome = run_stage(step["stage"], params, root=base)
        run_ids[step_id] = outcome.run_id
        outcomes.append((step_id, outcome))
        if outcome.status in ("failed", "interrupted"):
            return PipelineResult(str(spec.get("name", Path(config).stem)), outcomes, False)
    return PipelineResult(str(spec.get("name", Path(config).stem)), outcomes, True)
