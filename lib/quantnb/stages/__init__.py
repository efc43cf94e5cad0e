"""One module per notebook stage; each exposes ``<Stage>Params`` and ``run_<stage>``.

Stages are imported lazily (the ETL must not pay for importing torch).
"""

from __future__ import annotations

import importlib

import quantnb.display  # noqa: F401 - every run of a stage gets the progress widget and the one-line interrupt
from quantnb.config import StageParams
from quantnb.errors import ConfigError

__all__ = ["STAGES", "params_class"]

#: Stage name to ``module:ParamsClass``.
STAGES: dict[str, str] = {
    "etl": "quantnb.stages.etl:EtlParams",
    "postmortem": "quantnb.stages.postmortem:PostmortemParams",
    "labelling": "quantnb.stages.labelling:LabellingParams",
    "optimization": "quantnb.stages.optimization:OptimizationParams",
    "training": "quantnb.stages.training:TrainingParams",
    "agent": "quantnb.stages.agent:AgentParams",
    "live": "quantnb.stages.live:LiveParams",
    "record": "quantnb.stages.record:RecordParams",
    "download": "quantnb.stages.download:DownloadParams",
}


def params_class(stage: str) -> type[StageParams]:
    """Return the parameter model of ``stage``.

    Parameters
    ----------
    stage : str
        Stage name, e.g. ``"etl"``.

    Returns
    -------
    type of StageParams

    Raises
    ------
    ConfigError
        If ``stage`` is not one of :data:`STAGES`.
    """
    try:
        target = STAGES[stage]
    except KeyError:
        raise ConfigError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}") from None
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)
