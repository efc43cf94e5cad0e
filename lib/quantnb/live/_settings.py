"""A trading session's settings: the one place their defaults are written and checked."""

from __future__ import annotations

import dataclasses
from typing import Literal

from quantnb.errors import ConfigError
from quantnb.live._endpoints import check_endpoint_override
from quantnb.live._risk import RiskLimits

__all__ = ["SessionSettings"]


@dataclasses.dataclass(frozen=True)
class SessionSettings:
    """What a person chooses for a trading session; :func:`quantnb.live.build_trader` takes it whole.

    The live stage's parameters (:class:`quantnb.stages.live.LiveParams`) are these fields flat,
    with these defaults; the stage builds this object from them by name.

    Parameters
    ----------
    mode : {"replay", "testnet", "live"}
        ``replay``: processed bars, paper fills; ``testnet``: Binance USD-M demo trading;
        ``live``: real money, only with ``confirm_live=True``.
    symbol : str, optional
        Exchange symbol for testnet/live (``BTCUSDT``, ``BTC/USDT:USDT``; ``BTC-PERP`` maps to the latter).
    limits : RiskLimits
        ``max_drawdown_frac`` and ``max_position_frac`` (checked there, once).
    replay_speed, initial_equity_usd, fee_bps : optional
        Replay pace (60: a 1-minute bar a second; 0: at once); paper equity (USD) and taker fee (bps),
        by default the bundle's (observation parity).
    max_steps, duration_s, confirm_live, fresh_start
        Stop after bars or seconds; confirm real money; set the recorded state aside (logged).
    rest_base_url, ws_url, timeout_s
        Endpoint overrides (loopback or Binance's testnet over TLS only; none in ``live``), HTTP timeout (s).
    max_bad_bars, max_order_rejections, stale_warn_bars, stale_emergency_bars, stop_timeout_s
        Emergency triggers: bad candles or refused orders in a row; bars without a candle before a
        WARNING and REST fallback, then the emergency; seconds a stop may take (below the runner's 30 s).

    Raises
    ------
    ConfigError
        ``live`` without ``confirm_live``, an unknown mode, an endpoint override that could send
        the keys to a foreign host, ``stale_emergency_bars <= stale_warn_bars``, a count below 1.
    """

    mode: Literal["replay", "testnet", "live"] = "replay"
    symbol: str | None = None
    limits: RiskLimits = RiskLimits()
    replay_speed: float = 0.0
    initial_equity_usd: float | None = None
    fee_bps: float | None = None
    max_steps: int | None = None
    duration_s: float | None = None
    confirm_live: bool = False
    rest_base_url: str | None = None
    ws_url: str | None = None
    timeout_s: float = 10.0
    fresh_start: bool = False
    max_bad_bars: int = 3
    max_order_rejections: int = 3
    stale_warn_bars: int = 2
    stale_emergency_bars: int = 5
    stop_timeout_s: float = 20.0

    def __post_init__(self) -> None:
        if self.mode not in ("replay", "testnet", "live"):
            raise ConfigError(f"mode={self.mode!r}: use 'replay' (default), 'testnet' or 'live'")
        if self.mode == "live" and not self.confirm_live:
            raise ConfigError("mode='live' trades real money: set confirm_live=True to confirm (nothing was sent)")
        for name in ("max_bad_bars", "max_order_rejections", "stale_warn_bars", "stale_emergency_bars"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r}: give a whole number >= 1")
        if self.stale_emergency_bars <= self.stale_warn_bars:
            raise ConfigError(f"stale_emergency_bars={self.stale_emergency_bars} must exceed stale_warn_bars="
                              f"{self.stale_warn_bars}: the REST fallback comes before the emergency")
        check_endpoint_override(self.mode, "rest_base_url", self.rest_base_url)
        check_endpoint_override(self.mode, "ws_url", self.ws_url)
