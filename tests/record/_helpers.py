"""Helpers of the recorder tests: run a Recorder against a loopback server until the script is streamed."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from quantnb.record import Recorder, RecorderConfig


def record_until_done(cfg: RecorderConfig, server, *, settle_s: float = 0.5, timeout_s: float = 45.0) -> Recorder:
    """Record until ``server.done`` is set and no frame arrived for ``settle_s``; return the recorder."""
    rec = Recorder(cfg)
    t = threading.Thread(target=rec.run, daemon=True)
    t.start()
    deadline = time.monotonic() + timeout_s
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if rec.messages != last:
            last, since = rec.messages, time.monotonic()
        elif server.done.is_set() and time.monotonic() - since >= settle_s:
            break
    else:
        raise AssertionError(f"the loopback stream did not finish in {timeout_s} s ({rec.messages} frames received)")
    rec.request_stop()
    t.join(30)
    assert not t.is_alive(), "the recorder did not stop within 30 s of a stop request"
    return rec


def config(tmp: Path, **kw) -> RecorderConfig:
    base = dict(raw_dir=tmp / "raw", parquet_dir=tmp / "parquet", flush_every_s=0.3, progress_every_s=0.5,
                backoff_base_s=0.05)
    base.update(kw)
    return RecorderConfig(**base)
