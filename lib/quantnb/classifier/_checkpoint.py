from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from quantnb.errors import ConfigError, DataError
from quantnb.runs import atomic_path

CHECKPOINT_FORMAT = "quantnb.train_checkpoint/1"
LAST_NAME = "last.pt"
BEST_NAME = "best.pt"


def capture_rng_states() -> dict[str, Any]:
    """Return the torch, CUDA, numpy-global and python ``random`` RNG states (weights_only-loadable)."""
    kind, key, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": {"kind": str(kind), "key": torch.from_numpy(np.asarray(key, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    """Restore RNG states captured by :func:`capture_rng_states`."""
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write a training state with ``torch.save`` atomically (temporary file, fsync, rename)."""
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a state written by :func:`save_checkpoint` (``weights_only`` unpickling: no code runs)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: unreadable training checkpoint ({e}); delete it and start with resume=False",
                        path=str(path)) from e
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint; delete it or use another checkpoint_dir",
                        path=str(path))
    return state


def check_compatible(path: Path, state: dict[str, Any], expected: dict[str, Any]) -> None:
    """Refuse to resume when a result-changing setting or the data differ from the checkpoint."""
    for key, value in expected.items():
        old = state.get("identity", {}).get(key)
        if old != value:
            raise ConfigError(f"{key}: the checkpoint {path} was made with {old!r}, this run has {value!r}; "
                              "resume with the same settings and data, or start over with resume=False")
