"""Execute stage notebooks with papermill into ``runs/<run_id>/`` and record each run."""

from __future__ import annotations

from quantnb.runner._execute import RunOutcome, resolve_params, run_stage
from quantnb.runner._pipeline import PipelineResult, run_pipeline

__all__ = ["run_stage", "resolve_params", "RunOutcome", "run_pipeline", "PipelineResult"]
