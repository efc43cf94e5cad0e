"""SB3 callback: atomic checkpoints every N steps and progress reports to loguru and a hook."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from loguru import logger
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback

from quantnb.agent._checkpoint import save_checkpoint
from quantnb.agent._train_types import CheckpointInfo, SacParams, TrainProgress


class CheckpointProgress(BaseCallback):
    """Checkpoint at rollout starts (after the gradient steps: a clean state) and report progress."""

    def __init__(
        self,
        ckpt_dir: Path,
        params: SacParams,
        total_timesteps: int,
        every_steps: int,
        progress_every_steps: int,
        on_checkpoint: Callable[[CheckpointInfo], None] | None,
        on_progress: Callable[[TrainProgress], None] | None,
        found: CheckpointInfo | None,
        stats: dict[str, Any],
    ) -> None:
        super().__init__(verbose=0)
        self.ckpt_dir, self.params, self.total = ckpt_dir, params, total_timesteps
        self.every, self.progress_every = every_steps, progress_every_steps
        self.on_checkpoint, self.on_progress = on_checkpoint, on_progress
        self.last: CheckpointInfo | None = found
        self._last_step = 0 if found is None else found.num_timesteps
        self.episodes = int(stats.get("episodes", 0))
        self.returns: deque[float] = deque(stats.get("returns", ()), maxlen=100)
        self.ep_return = float(stats.get("ep_return", 0.0))
        self._sum, self._n = 0.0, 0
        self._t0 = self._tick = time.monotonic()
        self._tick_step = self._last_step

    def stats_state(self) -> dict[str, Any]:
        return {"episodes": self.episodes, "returns": list(self.returns), "ep_return": self.ep_return}

    def _on_training_start(self) -> None:
        self._t0 = self._tick = time.monotonic()
        self._tick_step = self.model.num_timesteps

    def _on_rollout_start(self) -> None:
        if self.model.num_timesteps - self._last_step >= self.every:
            self._checkpoint()

    def _on_step(self) -> bool:
        reward = float(self.locals["rewards"][0])
        self._sum += reward
        self._n += 1
        self.ep_return += reward
        if bool(self.locals["dones"][0]):
            self.episodes += 1
            self.returns.append(self.ep_return)
            self.ep_return = 0.0
        n = self.model.num_timesteps
        if n % self.progress_every == 0 or n >= self.total:
            self._report(n)
        return True

    def _on_training_end(self) -> None:
        if self.model.num_timesteps != self._last_step:
            self._checkpoint()

    def _checkpoint(self) -> None:
        info = save_checkpoint(self.ckpt_dir, cast(SAC, self.model), self.params, self.stats_state())
        self.last, self._last_step = info, info.num_timesteps
        logger.debug(
            "rl/checkpoint step={} replay_buffer_size={} path={}",
            info.num_timesteps,
            info.replay_buffer_size,
            info.path,
        )
        if self.on_checkpoint is not None:
            self.on_checkpoint(info)

    def _report(self, n: int) -> None:
        now = time.monotonic()
        fps = (n - self._tick_step) / max(now - self._tick, 1e-9)
        mean_return = sum(self.returns) / len(self.returns) if self.returns else None
        progress = TrainProgress(
            num_timesteps=n,
            total_timesteps=self.total,
            fps=fps,
            mean_reward=self._sum / self._n if self._n else 0.0,
            mean_episode_return=mean_return,
            episodes=self.episodes,
            elapsed_s=now - self._t0,
        )
        logger.debug(
            "rl/steps={}/{} rl/fps={:.1f} rl/mean_reward={:.3e} rl/mean_episode_return={} rl/episodes={}",
            n,
            self.total,
            fps,
            progress.mean_reward,
            "n/a" if mean_return is None else f"{mean_return:.4f}",
            self.episodes,
        )
        self._sum, self._n, self._tick, self._tick_step = 0.0, 0, now, n
        if self.on_progress is not None:
            self.on_progress(progress)
