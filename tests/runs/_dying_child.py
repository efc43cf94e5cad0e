"""python _dying_child.py ROOT: a run that saves 3 of 5 shards, loses one, leaves a temp file, then dies."""

import os
import sys

from loguru import logger

from quantnb.config import StageParams
from quantnb.runs import start_run


class DyingParams(StageParams):
    stage = "dying"


ctx = start_run(DyingParams(project_dir=sys.argv[1], console_level=None))
ctx.set_total(5, total_batches=5)
parts = ctx.run_dir / "parts"
parts.mkdir()
for i in range(3):
    shard = parts / f"item{i}.parquet"
    shard.write_bytes(b"x" * 100)
    ctx.batch_saved(i, 1, 10 * (i + 1), shard)
    ctx.checkpoint.mark_completed(f"item{i}")
    ctx.item_done(f"item{i}", events=10 * (i + 1), batch_num=i)
(parts / "item1.parquet").unlink()                      # a shard logged but gone
(parts / ".item3.parquet.abc.tmp").write_bytes(b"half")  # an atomic write cut short
logger.warning("disk is getting full")
logger.error("item3: simulated failure before the kill")
os._exit(137)                                            # like SIGKILL: no cleanup, no final status
