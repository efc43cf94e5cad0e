"""python _sleeper.py ROOT: a run that finishes 2 of 10 items, says READY, then waits to be killed."""

import sys
import time

from quantnb.config import StageParams
from quantnb.runs import start_run


class SleeperParams(StageParams):
    stage = "sleeper"


ctx = start_run(SleeperParams(project_dir=sys.argv[1], console_level=None, resume=len(sys.argv) > 2))
ctx.set_total(10)
for i in range(2):
    ctx.checkpoint.mark_completed(f"item{i}")
    ctx.item_done(f"item{i}", events=1)
ctx.record_metrics(files=2, bars=120)
print("READY", ctx.run_id, flush=True)
time.sleep(600)
