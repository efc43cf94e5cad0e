"""Execute stage notebooks with papermill into ``runs/<run_id>/`` and record each run.

The names are imported on first use, so ``quantnb runs`` (which only reads files) does
not import papermill.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from quantnb._lazy import defer_rfc3987_syntax

defer_rfc3987_syntax()  # papermill imports jsonschema: seconds of grammar building at every `quantnb run` start

if TYPE_CHECKING:
    from quantnb.runner._execute import RunOutcome, resolve_params, run_stage
    from quantnb.runner._pipeline import PipelineResult, run_pipeline

__all__ = ["run_stage", "resolve_params", "RunOutcome", "run_pipeline", "PipelineResult"]
_HOME = {"run_stage": "_execute", "resolve_params": "_execute", "RunOutcome": "_execute",
         "run_pipeline": "_pipeline", "PipelineResult": "_pipeline"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'quantnb.runner' has no attribute {name!r}")
    return getattr(importlib.import_module(f"quantnb.runner.{_HOME[name]}"), name)
