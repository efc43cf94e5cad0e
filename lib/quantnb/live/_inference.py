"""Deterministic policy inference without stable-baselines3's per-call overhead, bit-identical to ``predict``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from loguru import logger

__all__ = ["deterministic_policy"]


def deterministic_policy(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Return ``obs -> action`` equal to ``model.predict(obs, deterministic=True)[0]``, faster when possible.

    For a stable-baselines3 SAC policy on a flat ``Box`` observation without gSDE, the
    deterministic action is ``unscale(tanh(mu(latent_pi(features(obs)))))``; calling those
    modules directly under ``torch.inference_mode`` skips ``predict``'s mode switching,
    distribution objects and checks (about 0.3 ms down to 0.08 ms per call on a laptop CPU).
    The fast path is used only if it reproduces ``predict`` bit for bit on probe observations
    (stable-baselines3 ``SACPolicy._predict`` / ``Actor.forward`` / ``BasePolicy.predict``, v2.9).
    """

    def slow(obs: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(obs, deterministic=True)[0])

    fast = _sac_fast_path(model)
    if fast is None:
        return slow
    space = model.observation_space
    rng = np.random.default_rng(0)
    probes = [np.zeros(space.shape, np.float32)] + [
        rng.uniform(space.low, space.high).astype(np.float32) for _ in range(8)]
    if all(np.array_equal(fast(o), slow(o)) for o in probes):
        return fast
    logger.warning("live/inference: SAC fast path differs from predict(); using predict()")
    return slow


def _sac_fast_path(model: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    try:
        import torch
        from gymnasium import spaces
        from stable_baselines3 import SAC
        from stable_baselines3.common.torch_layers import FlattenExtractor
    except ImportError:  # pragma: no cover - both are project dependencies
        return None
    policy = getattr(model, "policy", None)
    actor = getattr(policy, "actor", None)
    if not isinstance(model, SAC) or policy is None or actor is None or getattr(actor, "use_sde", True):
        return None
    if not isinstance(model.observation_space, spaces.Box) or len(model.observation_space.shape) != 1:
        return None
    if not isinstance(model.action_space, spaces.Box) or not policy.squash_output:
        return None
    policy.set_training_mode(False)
    device = policy.device
    layers = _plain_layers([*actor.latent_pi, actor.mu]) if not _has_hooks(actor) else None
    if layers is None or not isinstance(actor.features_extractor, FlattenExtractor):
        return None
    low, high = model.action_space.low, model.action_space.high
    shape = (-1, *model.action_space.shape)

    def fast(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=device).reshape(1, -1)
            for weight, bias in layers[:-1]:
                x = torch.relu(torch.nn.functional.linear(x, weight, bias))
            action = torch.tanh(torch.nn.functional.linear(x, *layers[-1])).cpu().numpy().reshape(shape)
        return low + (0.5 * (action[0] + 1.0) * (high - low))  # BasePolicy.unscale_action

    return fast


def _has_hooks(module: Any) -> bool:
    return any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())


def _plain_layers(modules: list[Any]) -> list[tuple[Any, Any]] | None:
    """Return the (weight, bias) of ``Linear, ReLU, ..., Linear`` (the SAC actor MLP), else None."""
    import torch

    linears = modules[0::2]
    acts = modules[1::2]
    if not all(type(m) is torch.nn.Linear for m in linears) or not all(type(a) is torch.nn.ReLU for a in acts):
        return None
    if len(linears) != len(acts) + 1:
        return None
    return [(m.weight, m.bias) for m in linears]
