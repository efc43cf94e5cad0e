"""Child process of the kill/terminate tests: ``python -m tests.record._child '<RecordParams JSON>'``."""

from __future__ import annotations

import json
import sys

from quantnb.stages.record import RecordParams, run_record

if __name__ == "__main__":
    run_record(RecordParams(**json.loads(sys.argv[1])))
