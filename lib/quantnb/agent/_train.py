"""SAC training with atomic checkpoints (model, replay buffer, RNG and episode state) and exact resume."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from loguru import logger
from stable_baselines3.common.vec_env import DummyVecEnv

from quantnb.agent._callback import CheckpointProgress
from quantnb.agent._checkpoint import latest_checkpoint, load_checkpoint, new_model, save_checkpoint
from quantnb.agent._env import TradingEnv
from quantnb.agent._train_types import CheckpointInfo, SacParams, TrainProgress
from quantnb.classifier import TrainResult
from quantnb.errors import ConfigError


def train_sac(
    env: TradingEnv,
    params: SacParams,
    *,
    total_timesteps: int,
    checkpoint_dir: str | Path,
    checkpoint_every_steps: int,
    resume: bool = False,
    progress_every_steps: int = 1_000,
    on_checkpoint: Callable[[CheckpointInfo], None] | None = None,
    on_progress: Callable[[TrainProgress], None] | None = None,
) -> TrainResult:
    """Train SAC on ``env`` with checkpoints every N steps; optionally resume the last one.

    A checkpoint holds the model zip (networks, optimisers, step counters, last observation),
    the replay buffer, and the random-number and episode state (python, numpy, torch, the action
    space, the environment), each file written atomically and committed by ``checkpoint.json``
    last. Resuming restores all of it and continues with ``reset_num_timesteps=False``, so a
    run killed at any instant ends with the same networks as one never interrupted (same
    machine and library versions). SB3's own printing is off (``verbose=0``); progress goes to
    loguru as ``rl/steps``, ``rl/fps``, ``rl/mean_reward`` and to ``on_progress``.

    Parameters
    ----------
    env : TradingEnv
        Training environment (random starts and a max episode length are typical).
    params : SacParams
        Hyper-parameters; on resume they must equal the checkpoint's.
    total_timesteps : int
        Environment steps to reach in total, resumed steps included.
    checkpoint_dir : str or Path
        Directory of the checkpoints (created).
    checkpoint_every_steps : int
        Steps between checkpoints (rounded up to a multiple of ``train_freq``); one more is
        written at the end.
    resume : bool, default False
        Continue from ``checkpoint_dir``'s last checkpoint; start fresh when there is none.
    progress_every_steps : int, default 1000
        Steps between progress reports.
    on_checkpoint : callable, optional
        Called with a :class:`CheckpointInfo` after each committed checkpoint.
    on_progress : callable, optional
        Called with a :class:`TrainProgress` at each report.

    Returns
    -------
    quantnb.classifier.TrainResult
        ``steps_done`` in environment steps (>= ``total_timesteps`` unless it was already
        passed), ``resumed_from_step`` (0 for a fresh start), the last checkpoint's
        ``checkpoint.json`` and model zip.

    Raises
    ------
    ConfigError
        If a step count is not positive, ``checkpoint_dir`` already holds a checkpoint and
        ``resume`` is False, or the checkpoint's parameters or spaces differ from these.
    OSError
        If a checkpoint cannot be written (training stops; the previous checkpoint stays valid).
    """
    for name, v in (
        ("total_timesteps", total_timesteps),
        ("checkpoint_every_steps", checkpoint_every_steps),
        ("progress_every_steps", progress_every_steps),
    ):
        if int(v) < 1:
            raise ConfigError(f"{name}={v!r}: must be a positive number of steps")
    ckpt_dir = Path(checkpoint_dir)
    started = time.monotonic()
    found = latest_checkpoint(ckpt_dir)
    if found is not None and not resume:
        raise ConfigError(
            f"{found.path} holds a checkpoint at step {found.num_timesteps}; pass resume=True to continue it, "
            "or use a new checkpoint_dir so that run is not overwritten"
        )
    vec = DummyVecEnv([lambda: env])
    stats: dict = {}
    if found is not None:
        model, stats = load_checkpoint(found, vec, params)
        logger.info("rl/resume step={} checkpoint={}", found.num_timesteps, found.path)
    else:
        if resume:
            logger.info("rl/resume no checkpoint in {}; starting from step 0", ckpt_dir)
        model = new_model(vec, params)
    cb = CheckpointProgress(
        ckpt_dir,
        params,
        int(total_timesteps),
        int(checkpoint_every_steps),
        int(progress_every_steps),
        on_checkpoint,
        on_progress,
        found,
        stats,
    )
    remaining = int(total_timesteps) - model.num_timesteps
    if remaining > 0:
        model.learn(remaining, callback=cb, log_interval=None,  # type: ignore[arg-type]  # None: no log dumps (SB3)
                    reset_num_timesteps=found is None, progress_bar=False)
    elif found is not None:
        logger.info("rl/train already at step {} >= total_timesteps={}", model.num_timesteps, total_timesteps)
    last = cb.last if cb.last is not None else save_checkpoint(ckpt_dir, model, params, cb.stats_state())
    logger.info("rl/train done steps={} elapsed_s={:.1f}", model.num_timesteps, time.monotonic() - started)
    return TrainResult(model=model, steps_done=model.num_timesteps, step_unit="env_steps",
                       resumed_from_step=0 if found is None else found.num_timesteps, last_checkpoint_path=last.path,
                       best_model_path=last.model_path, elapsed_s=time.monotonic() - started)
