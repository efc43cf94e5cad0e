"""Shared builders for the rl tests (real BTC-PERP month, small environments, tiny SAC)."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from quantnb.agent import EnvSpec, FeatureScaler, SacParams, TradingEnv, compute_features
from quantnb.agent import make_env as build_env

REPO = Path(__file__).resolve().parents[2]
MONTH_CSV = REPO / "data" / "samples" / "ohlcv" / "BTC-PERP_20211231_20220201_1m.csv"
WARMUP = 100  # short warm-up keeps the small frames small; the default (500) is tested on the month
WINDOW = 4


@lru_cache(maxsize=1)
def month_bars() -> pl.DataFrame:
    """The bundled month of real 1-minute bars with a UTC ``ts`` column."""
    raw = pl.read_csv(MONTH_CSV)
    ts = pl.col("timestamp").str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_zone="UTC").dt.cast_time_unit("us")
    return raw.with_columns(ts.alias("ts")).drop("timestamp").select("ts", "open", "high", "low", "close", "volume")


def small_bars(n: int = 1_200) -> pl.DataFrame:
    return month_bars().head(n)


def hand_bars(closes: list[float], opens: list[float] | None = None) -> pl.DataFrame:
    """Bars on a hand-built price path, one minute apart from 2022-01-01 00:00 UTC."""
    start = dt.datetime(2022, 1, 1, tzinfo=dt.UTC)
    c = np.asarray(closes, dtype=np.float64)
    o = np.asarray(opens if opens is not None else np.r_[c[0], c[:-1]], dtype=np.float64)
    return pl.DataFrame({
        "ts": pl.Series([start + dt.timedelta(minutes=i) for i in range(len(c))]).dt.cast_time_unit("us"),
        "open": o, "high": np.maximum(o, c), "low": np.minimum(o, c), "close": c, "volume": np.ones(len(c)),
    })


def make_env(bars: pl.DataFrame | None = None, *, fee_bps: float = 5.0, slippage_bps: float = 1.0,
             max_position_frac: float = 1.0, deadband_frac: float = 0.02, split: int | None = None,
             warmup_bars: int = WARMUP, **env_kw) -> TradingEnv:
    """A TradingEnv on ``bars`` (default: first 1,200 real bars) with a scaler fitted on rows < ``split``."""
    bars = small_bars() if bars is None else bars
    feats = compute_features(bars, warmup_bars=warmup_bars)
    names = [c for c in feats.columns if c != "ts"]
    split = bars.height * 3 // 4 if split is None else split
    scaler = FeatureScaler.fit(feats.head(split), names)
    spec = EnvSpec(window=WINDOW, fee_bps=fee_bps, slippage_bps=slippage_bps, max_position_frac=max_position_frac,
                   deadband_frac=deadband_frac, warmup_bars=warmup_bars)
    return build_env(bars, spec, scaler, feats, **env_kw)


def tiny_sac_params(**over) -> SacParams:
    base = dict(learning_rate=1e-3, buffer_size=1_000, batch_size=32, tau=0.01, gamma=0.99, train_freq=1,
                gradient_steps=1, learning_starts=100, ent_coef="auto", net_arch=(16, 16), seed=7)
    base.update(over)
    return SacParams(**base)


SPLIT = 900  # small_bars(): training decisions before row 900, evaluation after


def train_env() -> TradingEnv:
    return make_env(end_ts=small_bars()["ts"][SPLIT - 1], max_episode_steps=64, random_start=True, split=SPLIT)


def eval_env() -> TradingEnv:
    return make_env(start_ts=small_bars()["ts"][SPLIT], split=SPLIT)
