"""The one executor of the file-parallel stages (ETL, labelling): a local process pool or a Dask cluster.

A stage submits one task per item (an input file) and consumes the results as they
complete; the driver (the process that called the stage, usually the notebook's kernel)
alone writes the checkpoint, the heartbeat and batch TSVs and the session log, so the
resume contract is the same whichever executor runs the items. A worker that dies (out of
memory, SIGKILL) or cannot see an input is an :class:`ExecutorError` (a :class:`~quantnb.errors.QuantnbError`),
never an item's fault.

>>> with open_executor(params, ctx) as ex:          # doctest: +SKIP
...     for item, path in jobs:
...         ex.submit(item, work_fn, path, inputs=(path,))
...     for done in ex.as_completed():
...         summary = done.result()                  # re-raises the task's own error (DataError...)
"""

from __future__ import annotations

from quantnb.parallel._executor import open_executor
from quantnb.parallel._params import ParallelStageParams
from quantnb.parallel._types import DASK_CONFIG_FILE, ExecutorError

__all__ = ["DASK_CONFIG_FILE", "ExecutorError", "ParallelStageParams", "open_executor"]
