from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from quantnb.agent import evaluate_agent, train_sac
from quantnb.agent._checkpoint import latest_checkpoint
from quantnb.errors import ConfigError
from tests.agent._helpers import REPO, eval_env, tiny_sac_params, train_env

TOTAL = 300


def _params_of(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.policy.state_dict().items()}


@pytest.mark.slow
def test_sac_killed_after_checkpoint_resumes_and_matches_uninterrupted_run(tmp_path):
    progress, checkpoints = [], []
    straight = train_sac(train_env(), tiny_sac_params(), total_timesteps=TOTAL, checkpoint_dir=tmp_path / "straight",
                         checkpoint_every_steps=50, progress_every_steps=100, on_progress=progress.append,
                         on_checkpoint=checkpoints.append)
    assert [p.num_timesteps for p in progress] == [100, 200, 300]
    assert all(p.fps > 0 and np.isfinite(p.mean_reward) for p in progress)
    assert [c.num_timesteps for c in checkpoints] == [50, 100, 150, 200, 250, 300]
    assert straight.steps_done == TOTAL and straight.resumed_from_step == 0 and straight.step_unit == "env_steps"

    ckpt = tmp_path / "killed"
    child = subprocess.run([sys.executable, "-m", "tests.agent._sac_child", str(ckpt), "150", str(TOTAL)],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    info = latest_checkpoint(ckpt)
    assert info.num_timesteps == 150 and info.replay_buffer_size == 150
    assert json.loads(info.path.read_text())["num_timesteps"] == 150
    n_obs = train_env().builder.n_obs
    assert info.replay_buffer_path.stat().st_size < 0.25 * 1_000 * 2 * n_obs * 4  # filled rows only, not 1,000
    assert sorted(p.name for p in ckpt.iterdir() if "step" in p.name) == [
        "replay_buffer_step000000000150.pkl", "sac_model_step000000000150.zip", "train_state_step000000000150.pkl"]

    with pytest.raises(ConfigError, match="pass resume=True"):
        train_sac(train_env(), tiny_sac_params(), total_timesteps=TOTAL, checkpoint_dir=ckpt, checkpoint_every_steps=50)
    with pytest.raises(ConfigError, match="batch_size: checkpoint 32 vs given 64"):
        train_sac(train_env(), tiny_sac_params(batch_size=64), total_timesteps=TOTAL, checkpoint_dir=ckpt,
                  checkpoint_every_steps=50, resume=True)

    resumed = train_sac(train_env(), tiny_sac_params(), total_timesteps=TOTAL, checkpoint_dir=ckpt,
                        checkpoint_every_steps=50, resume=True)
    assert resumed.resumed_from_step == 150
    assert resumed.steps_done == TOTAL
    assert resumed.model.replay_buffer.size() == TOTAL  # 150 restored + 150 new
    assert json.loads(resumed.last_checkpoint_path.read_text())["num_timesteps"] == TOTAL
    a, b = _params_of(straight.model), _params_of(resumed.model)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run diverged from the uninterrupted one"
    np.testing.assert_array_equal(straight.model.replay_buffer.observations, resumed.model.replay_buffer.observations)

    env = eval_env()
    ev1 = evaluate_agent(resumed.model, env)
    ev2 = evaluate_agent(straight.model, env)
    np.testing.assert_array_equal(ev1.actions, ev2.actions)
    assert len(ev1.actions) == env.n_period_steps == 1_200 - 900 - 1


def test_training_refuses_bad_step_counts(tmp_path):
    with pytest.raises(ConfigError, match="total_timesteps=0"):
        train_sac(train_env(), tiny_sac_params(), total_timesteps=0, checkpoint_dir=tmp_path, checkpoint_every_steps=10)
    with pytest.raises(ConfigError, match="unknown|Extra inputs"):
        type(tiny_sac_params()).parse({"learning_rat": 0.1})
