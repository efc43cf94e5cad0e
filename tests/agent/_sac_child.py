"""Child process for the SIGKILL test: train tiny SAC, kill itself right after a checkpoint."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import torch

from quantnb.agent import train_sac
from tests.agent._helpers import tiny_sac_params, train_env


def main() -> None:
    torch.set_num_threads(1)  # as in the parent test
    ckpt_dir, kill_at, total = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

    def on_checkpoint(info) -> None:
        if info.num_timesteps >= kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    train_sac(train_env(), tiny_sac_params(), total_timesteps=total, checkpoint_dir=ckpt_dir,
              checkpoint_every_steps=50, resume=True, on_checkpoint=on_checkpoint)


if __name__ == "__main__":
    main()
