"""Observation and action mapping shared by the training environment and the live trader.

Research and production build the agent's input and read its output through these two
classes only, so the two cannot drift: :class:`TradingEnv` calls them on every step and the
live loop calls them on every closed bar.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from quantnb.errors import ConfigError, DataError, OperationalError
from quantnb.features import FeatureScaler

PORTFOLIO_STATE_NAMES: tuple[str, ...] = ("position_frac", "unrealized_pnl_frac", "equity_ratio")
DEFAULT_FEATURE_CLIP_SIGMA = 5.0
"""Bound of the scaled features in an observation when the scaler itself does not clip."""


@dataclass(frozen=True)
class PortfolioState:
    """The account part of an observation, all unitless.

    Attributes
    ----------
    position_frac : float
        Signed position notional over equity, ``qty * mark / equity`` (long > 0, short < 0).
    unrealized_pnl_frac : float
        Unrealised PnL over equity, ``qty * (mark - avg_entry) / equity``.
    equity_ratio : float
        Equity over the equity at the start of the episode or live session.
    """

    position_frac: float
    unrealized_pnl_frac: float
    equity_ratio: float

    @classmethod
    def from_account(
        cls,
        *,
        position_qty: float,
        avg_entry_price_usd: float,
        equity_usd: float,
        initial_equity_usd: float,
        mark_price_usd: float,
    ) -> PortfolioState:
        """Build the state from account figures (a paper portfolio or an exchange account).

        Parameters
        ----------
        position_qty : float
            Signed position, base units (BTC); negative when short.
        avg_entry_price_usd : float
            Average entry price of the open position, USD per unit (ignored when flat).
        equity_usd : float
            Account equity marked at ``mark_price_usd``, USD.
        initial_equity_usd : float
            Equity at the start of the episode / session, USD, > 0.
        mark_price_usd : float
            Price the position is marked at (the last close), USD per unit.

        Returns
        -------
        PortfolioState

        Raises
        ------
        OperationalError
            If equity is not positive (the account is wiped out: stop trading).
        """
        if not equity_usd > 0 or not initial_equity_usd > 0:
            raise OperationalError(
                f"equity_usd={equity_usd!r}, initial_equity_usd={initial_equity_usd!r}: equity must be positive "
                "to size positions; the account is wiped out or mis-read; halt trading and check the account"
            )
        notional = position_qty * mark_price_usd
        upnl = position_qty * (mark_price_usd - avg_entry_price_usd) if position_qty != 0 else 0.0
        return cls(notional / equity_usd, upnl / equity_usd, equity_usd / initial_equity_usd)

    def as_array(self) -> np.ndarray:
        """Return ``[position_frac, unrealized_pnl_frac, equity_ratio]``, shape (3,), float64."""
        return np.array([self.position_frac, self.unrealized_pnl_frac, self.equity_ratio], dtype=np.float64)


class ObservationBuilder:
    """Turn a window of raw features and the portfolio state into the agent's observation.

    The observation is ``concat(scaled_window.ravel(), portfolio_state)``: the last ``window``
    rows of features (oldest first, row-major, so features of one bar are contiguous), each
    scaled with ``scaler`` and clipped to ``+-feature_clip`` (the scaler's ``clip_sigma``, or
    :data:`DEFAULT_FEATURE_CLIP_SIGMA` = 5 when the scaler does not clip), then the three values
    of :class:`PortfolioState` clipped to ``+-state_clip``.

    Parameters
    ----------
    feature_names : sequence of str
        Feature columns in the order of the window's columns; must equal the scaler's.
    window : int
        Number of most recent bars in the observation, >= 1.
    scaler : FeatureScaler
        Fitted on the training period.
    state_clip : float, default 10.0
        Bound on each portfolio-state value (keeps the observation inside a finite Box).

    Raises
    ------
    ConfigError
        If ``window < 1`` or the feature list differs from the scaler's.

    Attributes
    ----------
    n_features : int
        ``len(feature_names)``.
    n_obs : int
        ``window * n_features + 3``, the observation length.
    """

    def __init__(
        self, feature_names: Sequence[str], window: int, scaler: FeatureScaler, *, state_clip: float = 10.0
    ) -> None:
        names = tuple(feature_names)
        if int(window) < 1:
            raise ConfigError(f"window={window!r}: the observation window must be at least 1 bar")
        if names != tuple(scaler.feature_names):
            raise ConfigError(
                f"feature_names {list(names)} differ from the scaler's {list(scaler.feature_names)}; "
                "fit the scaler on the same feature list (or load both from one agent bundle)"
            )
        if not state_clip > 0:
            raise ConfigError(f"state_clip={state_clip!r}: must be > 0")
        self.feature_names: tuple[str, ...] = names
        self.window = int(window)
        self.scaler = scaler
        self.state_clip = float(state_clip)
        self.feature_clip = DEFAULT_FEATURE_CLIP_SIGMA if scaler.clip_sigma is None else float(scaler.clip_sigma)
        self.n_features = len(names)
        self.n_obs = self.window * self.n_features + len(PORTFOLIO_STATE_NAMES)

    def observation_space(self) -> gym.spaces.Box:
        """Return the ``Box`` every observation lies in.

        Returns
        -------
        gymnasium.spaces.Box
            Shape (n_obs,), float32: features in ``+-feature_clip``, state in ``+-state_clip``.
        """
        n_win = self.window * self.n_features
        low = np.concatenate([np.full(n_win, -self.feature_clip), np.full(3, -self.state_clip)])
        return gym.spaces.Box(low=low.astype(np.float32), high=-low.astype(np.float32), dtype=np.float32)

    def build(self, features_window: np.ndarray, state: PortfolioState) -> np.ndarray:
        """Return the observation from raw (unscaled) features.

        Parameters
        ----------
        features_window : np.ndarray, shape (window, n_features), float64
            Raw feature rows of the last ``window`` closed bars, oldest first, columns in
            ``feature_names`` order (``IncrementalFeatures.window_array`` gives exactly this).
        state : PortfolioState
            Account state marked at the last close.

        Returns
        -------
        np.ndarray, shape (n_obs,), float32

        Raises
        ------
        ConfigError
            If the window has the wrong shape.
        DataError
            If a feature value is NaN or infinite (features not warmed up, or bad bars).
        """
        return self.build_scaled(self.scaler.transform(self._check_window(features_window)), state)

    def build_scaled(self, scaled_window: np.ndarray, state: PortfolioState) -> np.ndarray:
        """Return the observation from features already passed through ``scaler.transform``.

        Same as :meth:`build` (bit for bit: scaling is element-wise) for callers that scale
        a whole feature matrix once, as :class:`TradingEnv` does.

        Parameters
        ----------
        scaled_window : np.ndarray, shape (window, n_features), float64
            The last ``window`` feature rows, oldest first, already scaled.
        state : PortfolioState
            The portfolio's state at the decision time.

        Returns
        -------
        np.ndarray, shape (n_obs,), float32
        """
        win = self._check_window(scaled_window)
        out = np.empty(self.n_obs, dtype=np.float64)
        n_win = self.window * self.n_features
        out[:n_win] = np.clip(win.ravel(), -self.feature_clip, self.feature_clip)
        out[n_win:] = np.clip(state.as_array(), -self.state_clip, self.state_clip)
        return out.astype(np.float32)

    def _check_window(self, window: np.ndarray) -> np.ndarray:
        arr = np.asarray(window, dtype=np.float64)
        if arr.shape != (self.window, self.n_features):
            raise ConfigError(
                f"features window has shape {arr.shape}, expected ({self.window}, {self.n_features}) "
                f"= (window, len(feature_names)); pass the last {self.window} feature rows"
            )
        if not np.isfinite(arr).all():
            row, col = np.argwhere(~np.isfinite(arr))[0]
            raise DataError(
                f"feature {self.feature_names[col]!r} is {arr[row, col]} in window row {row}; "
                "features are not warmed up yet or a bar is bad; feed more history before trading",
                bar=int(row), field=self.feature_names[col]
            )
        return arr


@dataclass(frozen=True)
class Decision:
    """What the action interpreter made of one agent action.

    Attributes
    ----------
    action_raw : float
        The policy output as given (before clipping).
    target_frac : float
        Target position notional over equity, in ``[-max_position_frac, max_position_frac]``.
    rebalance : bool
        False when the target is within the dead band of the current position: hold.
    """

    action_raw: float
    target_frac: float
    rebalance: bool


class ActionInterpreter:
    """Map an action in ``Box(-1, 1, shape=(1,))`` to a target position fraction of equity.

    ``target_frac = clip(action, -1, 1) * max_position_frac``; a long is positive, a short
    negative, 0 is flat. A rebalance is skipped when ``|target_frac - current_frac| <
    deadband_frac``, which keeps the agent from paying fees on tiny adjustments.

    Parameters
    ----------
    max_position_frac : float
        Largest absolute position notional as a fraction of equity (1.0 = no leverage), in (0, 10].
    deadband_frac : float, default 0.0
        Smallest change of position fraction worth trading, in [0, max_position_frac).

    Raises
    ------
    ConfigError
        If a parameter is out of range.
    """

    def __init__(self, max_position_frac: float, deadband_frac: float = 0.0) -> None:
        if not 0 < max_position_frac <= 10:
            raise ConfigError(f"max_position_frac={max_position_frac!r}: must be in (0, 10] (1.0 = no leverage)")
        if not 0 <= deadband_frac < max_position_frac:
            raise ConfigError(f"deadband_frac={deadband_frac!r}: must be in [0, max_position_frac={max_position_frac})")
        self.max_position_frac = float(max_position_frac)
        self.deadband_frac = float(deadband_frac)

    @staticmethod
    def action_space() -> gym.spaces.Box:
        """Return ``Box(-1, 1, shape=(1,), float32)``."""
        return gym.spaces.Box(low=-1.0, high=1.0, shape=(1,), dtype=np.float32)

    def target_frac(self, action: float | np.ndarray) -> float:
        """Return the target position fraction for ``action``.

        Parameters
        ----------
        action : float or np.ndarray, shape (1,) or (1, 1)
            Policy output; values outside [-1, 1] are clipped.

        Returns
        -------
        float
            In ``[-max_position_frac, max_position_frac]``.

        Raises
        ------
        OperationalError
            If the action is not a single finite number (a broken model: halt trading).
        """
        return float(np.clip(self._scalar(action), -1.0, 1.0)) * self.max_position_frac

    def decide(self, action: float | np.ndarray, current_frac: float) -> Decision:
        """Return the target and whether to trade towards it.

        Parameters
        ----------
        action : float or np.ndarray, shape (1,) or (1, 1)
            Policy output.
        current_frac : float
            Current position notional over equity (``PortfolioState.position_frac``).

        Returns
        -------
        Decision

        Raises
        ------
        OperationalError
            If the action is not a single finite number.
        """
        raw = self._scalar(action)
        target = self.target_frac(raw)
        return Decision(raw, target, abs(target - current_frac) >= self.deadband_frac and target != current_frac)

    @staticmethod
    def _scalar(action: float | np.ndarray) -> float:
        arr = np.asarray(action, dtype=np.float64).reshape(-1)
        if arr.size != 1 or not math.isfinite(arr[0]):
            raise OperationalError(
                f"agent action {arr.tolist()!r} is not one finite number; the model is broken or was fed a "
                "bad observation: halt trading and check the bundle"
            )
        return float(arr[0])
