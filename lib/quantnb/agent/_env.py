"""Gymnasium trading environment over closed bars."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, TypeVar

import gymnasium as gym
import numpy as np
import polars as pl

from quantnb.agent._costs import _MIN_QTY, BarQuote, FillModel
from quantnb.agent._features import DEFAULT_WARMUP_BARS, compute_features
from quantnb.agent._observation import ActionInterpreter, ObservationBuilder, PortfolioState
from quantnb.agent._perp import FundingRates, MarginTier, settlements_between
from quantnb.agent._portfolio import Portfolio
from quantnb.agent._rules import MarketRules
from quantnb.agent._train_types import EnvSpec
from quantnb.errors import ConfigError, DataError
from quantnb.features import FeatureScaler, segment_start_expr

_D = TypeVar("_D", np.ndarray, None)
_BANKRUPT_EQUITY_RATIO = 1e-6  # reward floor: log(1e-6) when equity is wiped out


class TradingEnv(gym.Env):
    """Trade one instrument bar by bar: the action sets the target position, filled at the next open.

    Step at decision bar ``t`` (after its close): the action becomes a target fraction of
    equity (:class:`ActionInterpreter`); the order is sized at ``close[t]``
    (:meth:`Portfolio.order_qty_for_target`) and filled at ``open[t + 1]`` (``open[t + 1 + latency_bars]``)
    with fee and slippage (:class:`FillModel`); the portfolio is marked at ``close[t + 1]`` and the reward is
    ``log(equity[t + 1] / equity[t])``. The next observation is built at ``t + 1`` by
    :class:`ObservationBuilder`. An episode ends with ``truncated=True`` at the end of the
    period, after ``max_episode_steps``, or at the last bar before a gap, and with
    ``terminated=True`` if equity reaches zero.

    Gaps: a step of 2 minutes or more between bars (or ``gap_before``) restarts the features
    (:mod:`quantnb.features`), so no observation spans a gap: a decision bar needs ``window``
    ready feature rows in its own segment and its next bar in that segment too. After a gap
    the environment waits for the warm-up; ``reset(options={"continue": True})`` resumes an
    evaluation at the next run of decision bars with the same portfolio.

    Parameters
    ----------
    bars : pl.DataFrame
        ETL bars: ``ts`` (strictly increasing), ``open``, ``close`` (USD) and the features'
        source columns. Pass the whole history: rows before ``start_ts`` only feed indicators.
    observation_builder : ObservationBuilder
        Defines the features, window and scaler.
    action_interpreter : ActionInterpreter
        Maps actions to target fractions (``max_position_frac``, ``deadband_frac``).
    fill_model : FillModel
        ``fee_bps`` and ``slippage_bps``.
    features : pl.DataFrame, optional
        Output of :func:`compute_features` for ``bars`` (computed here when omitted).
    start_ts, end_ts : datetime, optional
        Period of the episodes: first decision bar at or after ``start_ts`` (and after warm-up),
        last mark at or before ``end_ts``. Default: all bars.
    initial_equity_usd : float, default 10_000.0
        Equity at the start of each episode, USD.
    max_episode_steps : int, optional
        Episode length cap in steps (bars); default the whole period.
    random_start : bool, default False
        Start each episode at a uniformly drawn bar (``self.np_random``, seeded by
        ``reset(seed=...)``) so that ``max_episode_steps`` still fit in the period.
    warmup_bars : int, default 500
        Indicator warm-up when ``features`` is computed here.
    market_rules : MarketRules, optional
        Lot step, minimum quantity and notional applied to each order (:meth:`MarketRules.admit`,
        as the live risk manager does); none by default.
    funding : FundingRates, optional
        Perpetual funding: each settlement ``s`` with ``ts[t] < s <= ts[t + 1]`` is paid by the
        position held before the fill at ``open[t + 1]``, marked at that open (the first price at
        or after ``s``); a position held through a gap pays the gap's settlements the same way.
        None: no funding.
    margin_tiers : tuple of MarginTier, optional
        Maintenance-margin brackets: after each fill the bar's low (long) or high (short) is
        checked against the liquidation price; a liquidation ends the episode (``terminated``).
    latency_bars : int, default 0
        An order decided at bar ``t`` fills at ``open[t + 1 + latency_bars]`` (0: the next open),
        with the decision bar's quote. Orders in flight count in the sizing of later orders (the
        target is the position plus what is in flight) but not in the observation; those still
        in flight at the end of a run of decision bars (a gap, the period's end) are cancelled.
        :class:`quantnb.live.PaperBroker` applies the same rule.

    The fill model sees the decision bar's :class:`BarQuote` (``high``, ``low``, ``close``,
    ``volume`` as USD, and ``spread_bps_mean``, ``bid_depth_10``, ``ask_depth_10`` where the bars
    have them) when its spread or impact terms are switched on.

    Raises
    ------
    ConfigError
        If the period leaves no step after warm-up and window, or ``features`` does not match ``bars``.
    DataError
        If bars lack a column or hold a non-positive price.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        bars: pl.DataFrame,
        *,
        observation_builder: ObservationBuilder,
        action_interpreter: ActionInterpreter,
        fill_model: FillModel,
        features: pl.DataFrame | None = None,
        start_ts: dt.datetime | None = None,
        end_ts: dt.datetime | None = None,
        initial_equity_usd: float = 10_000.0,
        max_episode_steps: int | None = None,
        random_start: bool = False,
        warmup_bars: int = DEFAULT_WARMUP_BARS,
        market_rules: MarketRules | None = None,
        funding: FundingRates | None = None,
        margin_tiers: tuple[MarginTier, ...] | None = None,
        latency_bars: int = 0,
    ) -> None:
        super().__init__()
        if not (isinstance(latency_bars, int | np.integer) and latency_bars >= 0):
            raise ConfigError(f"latency_bars={latency_bars!r}: must be an integer >= 0 (0 = fill at the next open)")
        self.latency_bars = int(latency_bars)
        self._in_flight: list[tuple[int, float]] = []  # (decision bar, signed qty) of orders not yet filled
        self.builder, self.interpreter, self.fill_model = observation_builder, action_interpreter, fill_model
        names = list(observation_builder.feature_names)
        if features is None:
            features = compute_features(bars, names, warmup_bars=warmup_bars)
        self._check_features(bars, features, names)
        for col in ("open", "close"):
            if col not in bars.columns:
                raise DataError(f"bars lack column {col!r}; pass ETL bars with open and close prices", field=col)
        self._open = bars["open"].cast(pl.Float64).to_numpy()
        self._close = bars["close"].cast(pl.Float64).to_numpy()
        if not (np.isfinite(self._open).all() and (self._open > 0).all()):
            i = int(np.argmax(~(np.isfinite(self._open) & (self._open > 0))))
            raise DataError(f"bars row {i} (ts={bars['ts'][i]}): open={self._open[i]!r} is not a positive price",
                            bar=i, field="open")
        self._ts: list[dt.datetime] = bars["ts"].to_list()
        self.market_rules, self.funding, self.margin_tiers = market_rules, funding, margin_tiers
        self._high = self._col(bars, "high", self._close)
        self._low = self._col(bars, "low", self._close)
        eight_h_us = 8 * 3600 * 10**6  # settlements at 00/08/16 UTC are the multiples of 8 h since the epoch
        self._interval_no = bars["ts"].dt.cast_time_unit("us").dt.epoch("us").to_numpy() // eight_h_us
        self._quote_cols = {c: self._col(bars, c, None) for c in
                            ("volume", "spread_bps_mean", "bid_depth_10", "ask_depth_10")}
        raw = features.select(names).to_numpy().astype(np.float64)
        self._scaled = observation_builder.scaler.transform(raw)
        self._first, self._last = self._period(bars, raw, start_ts, end_ts)
        if max_episode_steps is not None and int(max_episode_steps) < 1:
            raise ConfigError(f"max_episode_steps={max_episode_steps!r}: must be >= 1 or None")
        self.max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        self.random_start = bool(random_start)
        self.initial_equity_usd = float(initial_equity_usd)
        self.observation_space = observation_builder.observation_space()
        self.action_space = action_interpreter.action_space()
        self.portfolio = Portfolio(self.initial_equity_usd)
        self._t = self._t_end = self._first

    @staticmethod
    def _col(bars: pl.DataFrame, name: str, default: _D) -> np.ndarray | _D:
        return bars[name].cast(pl.Float64).fill_null(np.nan).to_numpy() if name in bars.columns else default

    def quote(self, t: int) -> BarQuote:
        """Return bar ``t``'s :class:`BarQuote` (what the fill model sees for an order decided at ``t``).

        Parameters
        ----------
        t : int
            Bar index into the environment's bars.
        """
        q = {k: (None if v is None else float(v[t])) for k, v in self._quote_cols.items()}
        return BarQuote.from_bar(float(self._high[t]), float(self._low[t]), float(self._close[t]), q["volume"],
                                 q["spread_bps_mean"], q["bid_depth_10"], q["ask_depth_10"])

    @staticmethod
    def _check_features(bars: pl.DataFrame, features: pl.DataFrame, names: list[str]) -> None:
        missing = [c for c in names if c not in features.columns]
        if missing:
            raise ConfigError(f"features lack columns {missing}; compute them with compute_features(bars, names)")
        if features.height != bars.height or ("ts" in features.columns and not features["ts"].equals(bars["ts"])):
            raise ConfigError(
                f"features ({features.height} rows) are not aligned with bars ({bars.height} rows); "
                "compute them from the same bars frame"
            )

    def _period(
        self, bars: pl.DataFrame, raw: np.ndarray, start_ts: dt.datetime | None, end_ts: dt.datetime | None
    ) -> tuple[int, int]:
        """Find the decision bars: a full window of ready rows in one segment, and a next bar in it too."""
        w, n = self.builder.window, bars.height
        ready = np.isfinite(raw).all(axis=1)
        seg = bars.select(segment_start_expr(bars.columns).cum_sum()).to_series().to_numpy()
        # observation at t: `window` consecutive ready rows ending at t, all in t's segment
        run = np.convolve(ready.astype(np.int64), np.ones(w, dtype=np.int64))[:n] == w
        same = np.zeros(n, dtype=bool)
        same[w - 1 :] = seg[w - 1 :] == seg[: n - w + 1]
        obs_ok = run & same
        ts = bars["ts"]
        lo = 0 if start_ts is None else int(ts.search_sorted(start_ts, side="left"))
        hi = n - 1 if end_ts is None else int(ts.search_sorted(end_ts, side="right")) - 1
        dec = np.zeros(n, dtype=bool)  # a step from t fills at open[t + 1] and marks close[t + 1]: same segment
        if hi > lo:
            t = np.arange(lo, hi)
            dec[t] = obs_ok[t] & obs_ok[t + 1] & (seg[t] == seg[t + 1])
        cand = np.flatnonzero(dec)
        if cand.size == 0:
            raise ConfigError(
                f"no tradable bar between {start_ts} and {end_ts}: the period has {max(hi - lo + 1, 0)} bars but "
                f"needs more than warm-up plus window={w} ready feature rows in one segment (a gap of 2 minutes or "
                "more restarts the warm-up); widen the period or pass earlier history"
            )
        self._dec = dec
        # for each decision bar, the mark that ends its run of decision bars (the bar after the run's last)
        self._run_end = np.zeros(n, dtype=np.int64)
        nxt = -1
        for i in range(n - 1, -1, -1):
            if dec[i]:
                nxt = i + 1 if nxt < 0 or not dec[i + 1] else nxt
                self._run_end[i] = nxt
            else:
                nxt = -1
        return int(cand[0]), hi

    @property
    def first_decision_bar(self) -> int:
        """Return the index of the period's first decision bar (where an evaluation starts)."""
        return self._first

    @property
    def n_period_steps(self) -> int:
        """Return the number of decision bars of the period (steps of an evaluation over all of it)."""
        return int(self._dec.sum())

    @property
    def period_span(self) -> tuple[dt.datetime, dt.datetime]:
        """Return the timestamps of the first decision bar and the last marked bar."""
        return self._ts[self._first], self._ts[int(np.flatnonzero(self._dec)[-1]) + 1]

    @property
    def period_close_usd(self) -> np.ndarray:
        """Return the closes from the first decision bar to the last mark, shape (bars,), float64."""
        return self._close[self._first : self._last + 1].copy()

    @property
    def has_next_run(self) -> bool:
        """Return True when a later run of decision bars (after a gap) is left in the period."""
        return bool(self._dec[self._t + 1 :].any()) if self._t + 1 < self._dec.size else False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Start an episode; return the first observation and an info dict (see :meth:`step`).

        Parameters
        ----------
        seed : int, optional
            Seeds ``self.np_random`` (random starts).
        options : dict, optional
            ``{"continue": True}``: start at the next run of decision bars after the current bar
            (after a gap), keeping the portfolio, so an evaluation holds its position through the gap.

        Returns
        -------
        observation : numpy.ndarray, shape (n_obs,), float32
        info : dict
            As :meth:`step`'s, without a decision.

        Raises
        ------
        ConfigError
            If ``continue`` is asked and no later run is left.
        """
        super().reset(seed=seed)
        if options and options.get("continue"):
            later = np.flatnonzero(self._dec[self._t + 1 :])
            if later.size == 0:
                raise ConfigError("reset(options={'continue': True}): no decision bar is left after the current one")
            start = self._t + 1 + int(later[0])
            self._hold_through(self._t, start)
            self._in_flight = []
            steps = self.n_period_steps if self.max_episode_steps is None else self.max_episode_steps
            self._t, self._t_end = start, min(start + steps, int(self._run_end[start]))
            return self._observation(), self._info(None, None)
        steps = (
            self.n_period_steps if self.max_episode_steps is None else min(self.max_episode_steps, self.n_period_steps)
        )
        start = self._first
        if self.random_start:
            idx = np.flatnonzero(self._dec)
            fits = idx[self._run_end[idx] - idx >= steps]
            cand = fits if fits.size else idx
            if cand.size > 1:
                start = int(cand[self.np_random.integers(0, cand.size)])
        self._t, self._t_end = start, min(start + steps, int(self._run_end[start]))
        self.portfolio = Portfolio(self.initial_equity_usd)
        self._in_flight = []
        return self._observation(), self._info(None, None)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Apply ``action`` at the current bar and move to the next.

        Parameters
        ----------
        action : np.ndarray, shape (1,), float32
            In ``[-1, 1]`` (clipped): target position fraction of ``max_position_frac``.

        Returns
        -------
        observation : np.ndarray, shape (n_obs,), float32
        reward : float
            ``log(equity[t + 1] / equity[t])``.
        terminated : bool
            Equity wiped out.
        truncated : bool
            End of the period or of ``max_episode_steps``.
        info : dict
            ``bar_ts``, ``close_usd``, ``equity_usd``, ``position_qty``, ``position_frac``,
            ``action_raw``, ``target_frac``, ``fill_qty``, ``fill_price_usd``, ``fee_usd``,
            ``impact_usd`` (of the fill booked at ``open[t + 1]``: the order decided ``latency_bars``
            steps earlier), ``funding_usd`` and ``liquidation_price_usd`` (None unless liquidated).
        """
        t, pf = self._t, self.portfolio
        equity_before = pf.equity(self._close[t])
        decision = self.interpreter.decide(action, self._position_frac(t))
        fill, funding_usd = None, 0.0
        if self.funding is not None and pf.position_qty and self._interval_no[t + 1] > self._interval_no[t]:
            for s in settlements_between(self._ts[t], self._ts[t + 1]):
                funding_usd += pf.pay_funding(self.funding.rate_at(s), self._open[t + 1])
        if decision.rebalance:
            flying = sum(q for _, q in self._in_flight)
            qty = pf.order_qty_for_target(decision.target_frac, self._close[t]) - flying
            if self.market_rules is not None:
                qty, _ = self.market_rules.admit(qty, self._close[t], pf.position_qty + flying)
            if abs(qty) >= _MIN_QTY:
                self._in_flight.append((t, qty))
        for t_dec, qty in [o for o in self._in_flight if o[0] + self.latency_bars == t]:
            quote = self.quote(t_dec) if self.fill_model.uses_quotes else None
            fill = self.fill_model.fill(qty, self._open[t + 1], quote=quote, rules=self.market_rules)
            if fill is not None:
                pf.apply(fill)
        self._in_flight = [o for o in self._in_flight if o[0] + self.latency_bars > t]
        liquidated = None
        if self.margin_tiers is not None:
            liquidated = pf.liquidate_if_breached(self._low[t + 1], self._high[t + 1], self.margin_tiers)
        self._t = t + 1
        equity_after = pf.equity(self._close[t + 1])
        terminated = not equity_after > 0 or liquidated is not None
        ratio = max(equity_after / equity_before, _BANKRUPT_EQUITY_RATIO) if equity_before > 0 else 1.0
        reward = math.log(ratio)
        truncated = self._t >= self._t_end and not terminated
        info = self._info(decision, fill)
        info.update(funding_usd=funding_usd, liquidation_price_usd=liquidated)
        return self._observation(), float(reward), terminated, truncated, info

    def hold_funding_usd(self, qty: float, bar_ts: list[dt.datetime]) -> np.ndarray:
        """Return the cumulative funding a constant position pays over the marks ``bar_ts`` (buy-and-hold).

        Parameters
        ----------
        qty : float
            Signed position held throughout, base units.
        bar_ts : list of datetime
            Marked bars, as :func:`evaluate_agent` records them (bars of this environment).

        Returns
        -------
        np.ndarray, shape (len(bar_ts),), float64
            Funding paid up to each mark, USD (0 at the first; all 0 without ``funding``); each
            settlement at the open of the first bar at or after it, as the agent pays it.
        """
        out = np.zeros(len(bar_ts))
        if self.funding is None or not qty:
            return out
        where = {x: i for i, x in enumerate(self._ts)}
        idx = [where[x] for x in bar_ts]
        paid = 0.0
        for k in range(1, len(idx)):
            for i in range(idx[k - 1] + 1, idx[k] + 1):
                if self._interval_no[i] > self._interval_no[i - 1]:
                    for s in settlements_between(self._ts[i - 1], self._ts[i]):
                        paid += qty * self._open[i] * self.funding.rate_at(s)
            out[k] = paid
        return out

    def _hold_through(self, a: int, b: int) -> None:
        """Pay funding and check margin on bars a+1..b, held through a gap (each settlement at the next open)."""
        pf = self.portfolio
        for i in range(a + 1, b + 1):
            if self.funding is not None and pf.position_qty and self._interval_no[i] > self._interval_no[i - 1]:
                for s in settlements_between(self._ts[i - 1], self._ts[i]):
                    pf.pay_funding(self.funding.rate_at(s), self._open[i])
            if self.margin_tiers is not None:
                pf.liquidate_if_breached(self._low[i], self._high[i], self.margin_tiers)

    def _position_frac(self, t: int) -> float:
        eq = self.portfolio.equity(self._close[t])
        return self.portfolio.position_qty * self._close[t] / eq if eq > 0 else 0.0

    def _state(self) -> PortfolioState:
        close = self._close[self._t]
        if not self.portfolio.equity(close) > 0:
            return PortfolioState(0.0, 0.0, 0.0)
        return self.portfolio.state(close, self.initial_equity_usd)

    def _observation(self) -> np.ndarray:
        t, w = self._t, self.builder.window
        return self.builder.build_scaled(self._scaled[t - w + 1 : t + 1], self._state())

    def _info(self, decision: Any, fill: Any) -> dict[str, Any]:
        t, pf = self._t, self.portfolio
        return {
            "bar_ts": self._ts[t],
            "close_usd": float(self._close[t]),
            "equity_usd": float(pf.equity(self._close[t])),
            "position_qty": float(pf.position_qty),
            "position_frac": float(self._position_frac(t)),
            "action_raw": None if decision is None else decision.action_raw,
            "target_frac": None if decision is None else decision.target_frac,
            "fill_qty": 0.0 if fill is None else float(fill.qty),
            "fill_price_usd": None if fill is None else float(fill.price_usd),
            "fee_usd": 0.0 if fill is None else float(fill.fee_usd),
            "impact_usd": 0.0 if fill is None else float(fill.impact_usd),
        }

    def get_state(self) -> dict[str, Any]:
        """Return the episode state for an exact training resume.

        Returns
        -------
        dict
            ``t``, ``t_end`` (bar indices), ``portfolio``, ``in_flight`` (orders not yet filled)
            and ``np_random`` (the RNG state).
        """
        return {
            "t": self._t,
            "in_flight": [list(o) for o in self._in_flight],
            "t_end": self._t_end,
            "portfolio": self.portfolio.to_dict(),
            "np_random": self.np_random.bit_generator.state,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`get_state` (same bars and period).

        Parameters
        ----------
        state : dict
            Output of :meth:`get_state`.
        """
        self._t, self._t_end = int(state["t"]), int(state["t_end"])
        self.portfolio = Portfolio.from_dict(state["portfolio"])
        self._in_flight = [(int(t), float(q)) for t, q in state.get("in_flight", [])]
        rng_state = state["np_random"]
        bit_gen = getattr(np.random, rng_state["bit_generator"])()
        bit_gen.state = rng_state
        self._np_random = np.random.Generator(bit_gen)


def make_env(bars: pl.DataFrame, spec: EnvSpec, scaler: FeatureScaler, features: pl.DataFrame | None = None, *,
             symbol: str = "", **period: Any) -> TradingEnv:
    """Build the :class:`TradingEnv` that ``spec`` describes, observing the features ``scaler`` was fitted on.

    Parameters
    ----------
    bars : pl.DataFrame
        ETL bars, as :class:`TradingEnv` takes them.
    spec : EnvSpec
        Window, action mapping, starting equity, warm-up and the execution costs
        (:meth:`EnvSpec.cost_setup`).
    scaler : FeatureScaler
        Fitted on the training period only; its ``feature_names`` are the observed features.
    features : pl.DataFrame, optional
        Output of :func:`compute_features` for ``bars`` (computed by the environment when omitted).
    symbol : str
        Venue symbol, looked up only when ``spec.venue_rules`` is set.
    **period
        ``start_ts``, ``end_ts``, ``max_episode_steps``, ``random_start`` of :class:`TradingEnv`.

    Raises
    ------
    ConfigError
        As :class:`TradingEnv` and :meth:`EnvSpec.cost_setup` do.
    """
    return TradingEnv(
        bars, observation_builder=ObservationBuilder(scaler.feature_names, spec.window, scaler,
                                                     state_clip=spec.state_clip),
        action_interpreter=ActionInterpreter(spec.max_position_frac, spec.deadband_frac), features=features,
        initial_equity_usd=spec.initial_equity_usd, warmup_bars=spec.warmup_bars, **spec.cost_setup(symbol), **period)
