"""Write and read SAC training checkpoints: model zip, replay buffer, RNG and episode state."""

from __future__ import annotations

import datetime as dt
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from loguru import logger
from stable_baselines3 import SAC
from stable_baselines3.common.vec_env import DummyVecEnv

from quantnb.agent._train_types import CheckpointInfo, SacParams
from quantnb.errors import ConfigError
from quantnb.runs import atomic_path, atomic_write_json, read_json_tolerant

COMMIT_FILE = "checkpoint.json"
_FORMAT = "quantnb.rl.sac_checkpoint/1"
_BUFFER_FORMAT = "quantnb.rl.replay_buffer/1"


def new_model(vec: DummyVecEnv, params: SacParams) -> SAC:
    """Return a fresh SB3 ``SAC`` with an MLP policy on ``vec``, configured by ``params`` (CPU)."""
    return SAC(
        "MlpPolicy",
        vec,
        learning_rate=params.learning_rate,
        buffer_size=params.buffer_size,
        learning_starts=params.learning_starts,
        batch_size=params.batch_size,
        tau=params.tau,
        gamma=params.gamma,
        train_freq=(params.train_freq, "step"),
        gradient_steps=params.gradient_steps,
        ent_coef=params.ent_coef,
        policy_kwargs={"net_arch": list(params.net_arch)},
        seed=params.seed,
        device="cpu",
        verbose=0,
    )


def _buffer_payload(buf: Any) -> dict[str, Any]:
    """Only the filled rows: SB3's own save pickles the whole preallocated buffer (GBs for big windows)."""
    n = buf.buffer_size if buf.full else buf.pos
    arrays = {k: v[:n] for k, v in vars(buf).items() if isinstance(v, np.ndarray) and v.shape[:1] == (buf.buffer_size,)}
    return {
        "format": _BUFFER_FORMAT,
        "class": type(buf).__name__,
        "buffer_size": buf.buffer_size,
        "pos": buf.pos,
        "full": buf.full,
        "arrays": arrays,
    }


def _restore_buffer(buf: Any, payload: dict[str, Any], path: Path) -> None:
    if (
        payload.get("format") != _BUFFER_FORMAT
        or payload["class"] != type(buf).__name__
        or payload["buffer_size"] != buf.buffer_size
    ):
        raise ConfigError(
            f"{path}: replay buffer does not match the model (class or buffer_size differ); "
            "resume with the checkpoint's parameters or train into a new checkpoint_dir"
        )
    for name, arr in payload["arrays"].items():
        getattr(buf, name)[: len(arr)] = arr
    buf.pos, buf.full = payload["pos"], payload["full"]


def save_checkpoint(ckpt_dir: Path, model: SAC, params: SacParams, stats: dict[str, Any]) -> CheckpointInfo:
    """Save the model and the filled rows of its replay buffer, then commit them in ``checkpoint.json``."""
    n = int(model.num_timesteps)
    stem = f"step{n:012d}"
    paths = {
        "model": ckpt_dir / f"sac_model_{stem}.zip",
        "replay_buffer": ckpt_dir / f"replay_buffer_{stem}.pkl",
        "state": ckpt_dir / f"train_state_{stem}.pkl",
    }
    with atomic_path(paths["model"]) as tmp, open(tmp, "wb") as fh:
        model.save(fh)
    with atomic_path(paths["replay_buffer"]) as tmp, open(tmp, "wb") as fh:
        pickle.dump(_buffer_payload(model.replay_buffer), fh, protocol=pickle.HIGHEST_PROTOCOL)
    env = model.get_env().envs[0]  # type: ignore[union-attr]
    state = {
        "python_random": random.getstate(),
        "numpy_random": np.random.get_state(),
        "torch_random": torch.get_rng_state(),
        "action_space_rng": model.action_space.np_random.bit_generator.state,
        "env": env.get_state(),
        "stats": stats,
    }
    with atomic_path(paths["state"]) as tmp, open(tmp, "wb") as fh:
        pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
    saved_at = dt.datetime.now(dt.UTC)
    record = {
        "format": _FORMAT,
        "num_timesteps": n,
        **{k: p.name for k, p in paths.items()},
        "replay_buffer_size": int(model.replay_buffer.size()),  # type: ignore[union-attr]
        "saved_at": saved_at.isoformat(),
        "params": params.model_dump(mode="json"),
    }
    atomic_write_json(ckpt_dir / COMMIT_FILE, record)  # the commit: readers only trust what it names
    keep = {p.name for p in paths.values()}
    for old in ckpt_dir.glob("*_step*"):
        if old.name not in keep and old.suffix in (".zip", ".pkl"):
            old.unlink(missing_ok=True)
    return _info(ckpt_dir, record, saved_at)


def _info(ckpt_dir: Path, record: dict[str, Any], saved_at: dt.datetime) -> CheckpointInfo:
    return CheckpointInfo(
        path=ckpt_dir / COMMIT_FILE,
        num_timesteps=int(record["num_timesteps"]),
        model_path=ckpt_dir / record["model"],
        replay_buffer_path=ckpt_dir / record["replay_buffer"],
        state_path=ckpt_dir / record["state"],
        replay_buffer_size=int(record["replay_buffer_size"]),
        saved_at=saved_at,
        params=dict(record["params"]),
    )


def latest_checkpoint(checkpoint_dir: str | Path) -> CheckpointInfo | None:
    """Return the last committed checkpoint in ``checkpoint_dir``, or None when there is none."""
    ckpt_dir = Path(checkpoint_dir)
    record = read_json_tolerant(ckpt_dir / COMMIT_FILE)
    if record is None:
        return None
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        raise ConfigError(f"{ckpt_dir / COMMIT_FILE}: not a quantnb SAC checkpoint; use another checkpoint_dir")
    for key in ("model", "replay_buffer", "state"):
        if not (ckpt_dir / record[key]).is_file():
            raise ConfigError(
                f"{ckpt_dir / COMMIT_FILE} names {record[key]} but {ckpt_dir / record[key]} is missing; files were "
                "removed by hand: restore them, or delete checkpoint.json to train from step 0"
            )
    return _info(ckpt_dir, record, dt.datetime.fromisoformat(record["saved_at"]))


def load_checkpoint(info: CheckpointInfo, vec: DummyVecEnv, params: SacParams) -> tuple[SAC, dict[str, Any]]:
    """Load the model and replay buffer a :class:`CheckpointInfo` names, onto environment ``vec``."""
    given = params.model_dump(mode="json")
    diff = {k: (info.params.get(k), v) for k, v in given.items() if info.params.get(k) != v}
    if diff:
        changes = ", ".join(f"{k}: checkpoint {a!r} vs given {b!r}" for k, (a, b) in diff.items())
        raise ConfigError(
            f"{info.path}: resuming with different SAC parameters ({changes}); resume with the checkpoint's "
            "parameters or train into a new checkpoint_dir"
        )
    try:
        model = SAC.load(info.model_path, env=vec, device="cpu", force_reset=False)
    except ValueError as e:  # SB3: observation/action space mismatch
        raise ConfigError(
            f"{info.model_path}: does not fit this environment ({e}); use the same features and window"
        ) from e
    assert model.replay_buffer is not None  # SAC.load builds it (_setup_model)
    with open(info.replay_buffer_path, "rb") as fh:
        _restore_buffer(model.replay_buffer, pickle.load(fh), info.replay_buffer_path)
    with open(info.state_path, "rb") as fh:
        state = pickle.load(fh)  # our own file, named by the committed record
    # SAC.load re-seeds every generator (SB3 _setup_model); put back where the run was
    random.setstate(state["python_random"])
    np.random.set_state(state["numpy_random"])
    torch.set_rng_state(state["torch_random"])
    model.action_space.np_random.bit_generator.state = state["action_space_rng"]
    vec.envs[0].set_state(state["env"])  # type: ignore[attr-defined]
    vec._reset_seeds()  # no re-seeding at the next episode reset
    logger.debug("rl/checkpoint loaded step={} replay_buffer_size={}", info.num_timesteps, model.replay_buffer.size())
    return model, dict(state["stats"])
