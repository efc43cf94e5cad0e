"""``open_executor``: the one way a file-parallel stage gets its executor (local process pool or Dask)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from quantnb.parallel._local import LocalExecutor
from quantnb.parallel._params import ParallelStageParams
from quantnb.parallel._types import ItemExecutor

if TYPE_CHECKING:
    from quantnb.runs import RunContext


@contextlib.contextmanager
def open_executor(params: ParallelStageParams, ctx: RunContext) -> Iterator[ItemExecutor]:
    """Open the executor a stage's parameters ask for; close it however the block ends.

    Parameters
    ----------
    params : ParallelStageParams
        ``executor`` (``local``: a process pool on this machine, with a watchdog for killed
        workers; ``dask``: tasks on a Dask cluster), ``n_workers`` (local processes, or the
        size of the ``distributed.LocalCluster`` started when ``scheduler`` is None) and
        ``scheduler`` (a Dask scheduler address, ``tcp://host:8786``).
    ctx : RunContext
        The run (session log, third-party log levels, run id and stage for the resume hint).

    Yields
    ------
    ItemExecutor

    Raises
    ------
    ConfigError
        If the Dask scheduler cannot be reached.
    """
    if params.executor == "dask":
        from quantnb.parallel._dask import DaskExecutor  # distributed is heavy: imported for Dask runs only

        ex: ItemExecutor = DaskExecutor(n_workers=params.n_workers, scheduler=params.scheduler, run_id=ctx.run_id)
    else:
        ex = LocalExecutor(params.n_workers, ctx.worker_initargs(),
                           resume_hint=f"quantnb run {ctx.stage} --resume {ctx.run_id}")
    try:
        yield ex
    finally:
        ex.close()
