"""Run logging, heartbeats, checkpoints and resume: the spine of every quantnb stage."""

from __future__ import annotations

from quantnb.runlog._atomic import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    read_json_tolerant,
)

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "read_json_tolerant",
]
