"""Parameters shared by the file-parallel stages: which executor runs their items, with how many workers."""

from __future__ import annotations

from typing import ClassVar, Literal, Self

from pydantic import Field, PositiveInt, model_validator

from quantnb.config import StageParams

ExecutorKind = Literal["local", "dask"]
EXECUTOR_FIELDS = frozenset({"executor", "scheduler"})  # how to run, not what: outside the config hash


class ParallelStageParams(StageParams):
    """Base of the parameters of a stage whose items (input files) run in parallel.

    ``executor``, ``scheduler`` and ``n_workers`` say how to run, not what to compute: they
    are left out of the config hash, so a run started on one machine may be resumed on a cluster.
    """

    execution_fields: ClassVar[frozenset[str]] = StageParams.execution_fields | EXECUTOR_FIELDS

    n_workers: PositiveInt = Field(2, description="Worker processes; 1 runs in-process.")
    executor: ExecutorKind = Field(
        "local", description="'local': a process pool of n_workers; 'dask': Dask tasks (README: Scaling out)."
    )
    scheduler: str | None = Field(
        None, description="Dask scheduler address, e.g. tcp://host:8786; None: a LocalCluster of n_workers."
    )

    @model_validator(mode="after")
    def _scheduler_needs_dask(self) -> Self:
        if self.scheduler is not None and self.executor != "dask":
            raise ValueError(f"scheduler={self.scheduler!r} is only used with executor='dask'; "
                             "set executor to 'dask' or leave scheduler unset")
        return self
