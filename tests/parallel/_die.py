"""Stage worker functions that die as if killed by the out-of-memory killer on inputs named ``*_die_*``."""

from __future__ import annotations

import os
import signal
from typing import Any

from quantnb.stages import etl, labelling


def ingest_or_die(path: str, shard: str, options: dict[str, Any]) -> dict[str, Any]:
    if "_die_" in os.path.basename(path):
        os.kill(os.getpid(), signal.SIGKILL)
    return etl._ingest_to_shard(path, shard, options)


def label_or_die(path: str, *args: Any) -> dict[str, Any]:
    if "_die_" in os.path.basename(path):
        os.kill(os.getpid(), signal.SIGKILL)
    return labelling._label_one(path, *args)
