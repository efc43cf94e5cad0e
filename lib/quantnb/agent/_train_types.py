"""Parameter and report types of SAC training."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from quantnb.agent._costs import DEFAULT_FEE_BPS
from quantnb.errors import ConfigError

PositiveInt = Annotated[int, Field(gt=0)]


class _Params(BaseModel):
    """Frozen parameters, unknown names refused, validated by :meth:`parse`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def parse(cls, values: dict) -> Self:
        """Validate ``values`` (unknown names refused)."""
        try:
            return cls(**values)
        except ValidationError as e:
            raise ConfigError(f"{cls.__name__} parameters: {e}") from e


class SacParams(_Params):
    """Hyper-parameters of stable-baselines3's SAC, all explicit (SB3's defaults are not relied on).

    See Haarnoja et al., "Soft Actor-Critic Algorithms and Applications", arXiv:1812.05905, 2018,
    and the stable-baselines3 SAC documentation for their meaning.
    """

    learning_rate: float = Field(3e-4, gt=0, lt=1, description="Adam step size of actor, critics and entropy.")
    buffer_size: PositiveInt = Field(100_000, description="Replay buffer capacity, transitions.")
    batch_size: PositiveInt = Field(256, description="Transitions per gradient step.")
    tau: float = Field(0.005, gt=0, le=1, description="Polyak coefficient of the target critics.")
    gamma: float = Field(0.99, ge=0, lt=1, description="Discount factor per step (bar).")
    train_freq: PositiveInt = Field(1, description="Environment steps between training phases.")
    gradient_steps: PositiveInt = Field(1, description="Gradient steps per training phase.")
    learning_starts: int = Field(1_000, ge=0, description="Random-action steps before learning starts.")
    ent_coef: float | Literal["auto"] = Field("auto", description="Entropy coefficient, or 'auto' to learn it.")
    net_arch: tuple[PositiveInt, ...] = Field(
        (64, 64), min_length=1, description="Hidden layer sizes, actor and critics."
    )
    seed: int = Field(0, ge=0, description="Seed of python, numpy, torch, the action space and the environment.")


@dataclass(frozen=True)
class TrainProgress:
    """Training progress reported every ``progress_every_steps``."""

    num_timesteps: int
    total_timesteps: int
    fps: float
    mean_reward: float
    mean_episode_return: float | None
    episodes: int
    elapsed_s: float


@dataclass(frozen=True)
class CheckpointInfo:
    """One committed training checkpoint."""

    path: Path
    num_timesteps: int
    model_path: Path
    replay_buffer_path: Path
    state_path: Path
    replay_buffer_size: int
    saved_at: dt.datetime
    params: dict[str, Any]


class EnvSpec(_Params):
    """Settings of the trading environment an agent is trained in, and that live trading must reproduce.

    Stored verbatim in the agent bundle (``env:``); :class:`AgentMetadata` reads its figures from here.
    """

    window: PositiveInt = Field(32, description="Bars of scaled features in one observation.")
    fee_bps: float = Field(DEFAULT_FEE_BPS, ge=0, description="Taker fee on notional, bps (default: Binance USD-M "
                                                              "VIP 0 taker, agent._costs.DEFAULT_FEE_BPS).")
    slippage_bps: float = Field(1.0, ge=0, description="Fill price slippage against the next open, bps.")
    max_position_frac: float = Field(1.0, gt=0, le=5, description="Largest |position| as a fraction of equity.")
    deadband_frac: float = Field(0.05, ge=0, lt=1, description="Ignore target changes smaller than this.")
    initial_equity_usd: float = Field(10_000.0, gt=0, description="Starting equity of every episode, USD.")
    max_episode_steps: PositiveInt = Field(1440, description="Bars per training episode (random starts).")
    warmup_bars: int = Field(500, ge=60, description="Warm-up of the recursive indicators after a start or gap.")
    state_clip: float = Field(10.0, gt=0, description="Bound of the portfolio-state values in an observation.")
    feature_clip_sigma: float = Field(5.0, gt=0, description="Bound of the scaled features, standard deviations.")
    cross_spread: bool = Field(False, description="Pay half the decision bar's spread_bps_mean on each fill.")
    impact_coef: float = Field(0.0, ge=0, description="Y of the square-root impact Y*sigma*sqrt(Q/V); 0 = off.")
    venue_rules: Literal["binance_usdm", "bybit_linear"] | None = Field(
        None, description="Apply this venue's lot step, minimum notional and margin tiers (None: none).")
    funding_rate: float | None = Field(
        None, ge=-0.01, le=0.01, description="Constant perpetual funding rate per 8-hour settlement; None: off.")
    latency_bars: int = Field(0, ge=0, le=60, description="Bars between a decision and its fill: 0 = the next open.")

    def cost_setup(self, symbol: str) -> dict[str, Any]:
        """Return the execution-cost pieces of the environment and the paper broker for ``symbol``.

        Parameters
        ----------
        symbol : str
            Venue symbol (``BTCUSDT``); looked up only when ``venue_rules`` is set.

        Returns
        -------
        dict
            ``fill_model``, ``market_rules``, ``funding``, ``margin_tiers`` (None where off) and ``latency_bars``: the
            keyword arguments :class:`TradingEnv` takes and :class:`quantnb.live.PaperBroker` mirrors.

        Raises
        ------
        ConfigError
            If ``venue_rules`` is set and the symbol is not in the venue tables.
        """
        from quantnb.agent._costs import FillModel
        from quantnb.agent._perp import MARGIN_TIERS, FundingRates
        from quantnb.agent._rules import MarketRules

        rules = tiers = None
        if self.venue_rules is not None:
            rules = MarketRules.for_venue(self.venue_rules, symbol)
            tiers = MARGIN_TIERS.get((self.venue_rules, symbol.replace("/", "").split(":")[0].upper()))
        return {"fill_model": FillModel(self.fee_bps, self.slippage_bps, cross_spread=self.cross_spread,
                                        impact_coef=self.impact_coef),
                "market_rules": rules, "margin_tiers": tiers,
                "funding": None if self.funding_rate is None else FundingRates(constant_rate=self.funding_rate),
                "latency_bars": self.latency_bars}


def nest_flat_params(values: dict[str, Any]) -> dict[str, Any]:
    """Move flat SAC and environment parameters into ``sac`` and ``env`` (the one place they are mapped).

    Notebooks and ``quantnb run -p`` pass flat names (``buffer_size``, ``window``); the agent
    stage and its bundle hold :class:`SacParams` and :class:`EnvSpec`. A flat value of None
    means "not set" (the class default applies), so defaults live in those two classes only.

    Parameters
    ----------
    values : dict
        Parameter names to values; may already hold ``sac`` / ``env`` (dicts or models).

    Returns
    -------
    dict
        A copy with every :class:`SacParams` / :class:`EnvSpec` field name moved into ``sac`` / ``env``.

    Raises
    ------
    ConfigError
        If a name is given both flat and inside ``sac`` or ``env`` with different values.
    """
    out = dict(values)
    for key, model in (("sac", SacParams), ("env", EnvSpec)):
        given = out.get(key) or {}
        nested = dict(given.model_dump() if isinstance(given, BaseModel) else given)
        for name in model.model_fields:
            if name not in out:
                continue
            value = out.pop(name)
            if value is None:
                continue
            if name in nested and nested[name] != value:
                raise ConfigError(f"{name}={value!r} given flat and as {key}.{name}={nested[name]!r}; give it once")
            nested[name] = value
        if nested or key in out:
            out[key] = nested
    return out
