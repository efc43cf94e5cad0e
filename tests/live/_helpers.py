from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from loguru import logger

from quantnb.agent import (
    MARKET_FEATURES,
    ActionInterpreter,
    FeatureScaler,
    IncrementalFeatures,
    ObservationBuilder,
    compute_features,
)
from quantnb.live._feed import ReplayProvider
from quantnb.live._types import Bar
from quantnb.retry import RetryPolicy
from quantnb.testing.binance_server import BinanceLoopbackServer

ROOT = Path(__file__).resolve().parents[2]
OHLCV = ROOT / "data" / "samples" / "ohlcv" / "BTC-PERP_20211231_20220201_1m.csv"
WARMUP = 60  # the shortest warm-up the rl features accept (longest look-back)
WINDOW = 2


def sample_bars(n: int, offset: int = 0) -> pl.DataFrame:
    """The first ``n`` real 1-minute BTC-PERP bars of the bundled month (after ``offset``)."""
    df = pl.read_csv(OHLCV, n_rows=n + offset).slice(offset, n)
    return df.with_columns(pl.col("timestamp").str.to_datetime(time_unit="us", time_zone="UTC").alias("ts")).drop(
        "timestamp").select("ts", "open", "high", "low", "close", "volume")


class MomentumPolicy:
    """A deterministic rule: all in long after an up bar, all in short after a down bar."""

    def __init__(self, ret1_index: int):
        self.ret1_index = ret1_index

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> tuple[np.ndarray, None]:
        return np.array([1.0 if obs[self.ret1_index] > 0 else -1.0], dtype=np.float32), None


class ConstantPolicy:
    """Always the same action (e.g. 1.0 = fully long)."""

    def __init__(self, action: float):
        self.action = action

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> tuple[np.ndarray, None]:
        return np.array([self.action], dtype=np.float32), None


@dataclasses.dataclass
class RuleAgent:
    model: Any
    observation_builder: ObservationBuilder
    action_interpreter: ActionInterpreter
    warmup_bars: int = WARMUP

    def new_feature_stream(self) -> IncrementalFeatures:
        b = self.observation_builder
        return IncrementalFeatures(b.feature_names, window=b.window, warmup_bars=self.warmup_bars)


def make_agent(model: Any | None = None, max_position_frac: float = 1.0) -> RuleAgent:
    bars = sample_bars(400)
    names = list(MARKET_FEATURES)
    scaler = FeatureScaler.fit(compute_features(bars, names, warmup_bars=WARMUP), names)
    builder = ObservationBuilder(names, WINDOW, scaler)
    ret1 = (WINDOW - 1) * len(names) + names.index("ret_1")
    return RuleAgent(model or MomentumPolicy(ret1), builder, ActionInterpreter(max_position_frac))


class PricedReplay(ReplayProvider):
    """Replay that also moves the loopback exchange's mark price to each bar's close (times ``factor``)."""

    def __init__(self, bars: pl.DataFrame, server: BinanceLoopbackServer, *, history_bars: int,
                 price_factor=lambda step: 1.0):
        super().__init__(bars, history_bars=history_bars)
        self.server, self.price_factor, self.step = server, price_factor, 0

    def next_bar(self, timeout_s: float) -> Bar | None:
        bar = super().next_bar(timeout_s)
        if bar is not None:
            factor = self.price_factor(self.step)
            bar = dataclasses.replace(bar, open=bar.open * factor, high=bar.high * factor, low=bar.low * factor,
                                      close=bar.close * factor, next_open=None)
            self.server.set_price("BTCUSDT", bar.close)
            self.step += 1
        return bar


class RetryWaits:
    """Collect the waits the retry policy logs (``retrying in X s``); stamina's test mode skips the sleeping."""

    _PATTERN = re.compile(r"retrying in ([0-9.]+) s")

    def __init__(self):
        self.calls: list[float] = []
        self._sink = logger.add(self._on_message, level="WARNING", format="{message}")

    def _on_message(self, message) -> None:
        m = self._PATTERN.search(str(message))
        if m:
            self.calls.append(float(m.group(1)))

    def close(self) -> None:
        logger.remove(self._sink)


def fixed_retry(wait_s: float = 1.0, attempts: int = 4) -> RetryPolicy:
    """A retry policy with a constant wait and no jitter (deterministic logged waits)."""
    return RetryPolicy(attempts=attempts, wait_initial_s=wait_s, wait_exp_base=1.0, wait_jitter_s=0.0,
                       timeout_s=None, what="test/retry")


class RecordingSleep:
    """A sleep that records the waits instead of sleeping (fast retries)."""

    def __init__(self):
        self.calls: list[float] = []

    def __call__(self, s: float) -> None:
        self.calls.append(s)


def save_tiny_bundle(bundle_dir: Path, bars: pl.DataFrame, split_ts: Any, *, window: int = 4, learn_steps: int = 150,
                     always_long: bool = False) -> None:
    """Train a tiny SAC agent on ``bars`` before ``split_ts`` and save it as an agent bundle in ``bundle_dir``.

    ``always_long`` rewires the actor's output layer to a constant +1 (fully long on every bar), for
    tests that need a position open at a known time.
    """
    import torch
    from stable_baselines3 import SAC

    from quantnb.agent import AgentMetadata, EnvSpec, make_env, save_agent_bundle

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        feats = compute_features(bars, warmup_bars=WARMUP)
        names = [c for c in feats.columns if c != "ts"]
        scaler = FeatureScaler.fit(feats.filter(feats["ts"] < split_ts), names)
        spec = EnvSpec(window=window, fee_bps=4.0, slippage_bps=1.0, max_position_frac=1.0, deadband_frac=0.02,
                       warmup_bars=WARMUP, initial_equity_usd=10_000.0)
        env = make_env(bars, spec, scaler, feats, end_ts=split_ts, max_episode_steps=100, random_start=True)
        model = SAC("MlpPolicy", env, buffer_size=1_000, learning_starts=50, batch_size=32, seed=0, device="cpu",
                    policy_kwargs={"net_arch": [32, 32]}, verbose=0)
        model.learn(learn_steps)
        if always_long:
            with torch.no_grad():
                model.policy.actor.mu.weight.zero_()
                model.policy.actor.mu.bias.fill_(5.0)
        save_agent_bundle(bundle_dir, model, scaler, AgentMetadata(env=spec, symbol="BTC-PERP", timeframe="1m"))
    finally:
        torch.set_num_threads(threads)
