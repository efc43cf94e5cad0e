"""Funding in the live trade log (registro) and the session metrics: what research books for the same bars."""

from __future__ import annotations

import csv
import datetime as dt

import numpy as np
import pytest

from quantnb.agent import ActionInterpreter, FeatureScaler, FillModel, FundingRates, ObservationBuilder, TradingEnv
from quantnb.agent import compute_features as rl_features
from quantnb.live import PaperBroker, ReplayProvider, RiskLimits, Trader
from tests.live._helpers import WARMUP, WINDOW, ConstantPolicy, make_agent, sample_bars

S08 = dt.datetime(2022, 1, 1, 8, tzinfo=dt.UTC)  # the bars start 2021-12-31 23:01: 00:00 falls in the warm-up


def _funding() -> FundingRates:
    return FundingRates([S08], [0.0003], constant_rate=-0.0001)  # the series' 08:00 rate, the fallback elsewhere


def test_registro_and_session_metrics_carry_the_funding_research_books_for_the_same_bars(tmp_path):
    lead = WARMUP + WINDOW - 2
    bars = sample_bars(lead + 560)  # through the 08:00 settlement
    agent = make_agent(ConstantPolicy(0.8))
    broker = PaperBroker("BTC-PERP", 10_000.0, FillModel(5.0, 1.0), funding=_funding())
    stats = Trader(agent, ReplayProvider(bars, history_bars=lead), broker, RiskLimits(0.5, 1.0), tmp_path).run()
    with open(stats.registro_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    paid = {r["bar_ts"]: float(r["funding_usd"]) for r in rows if float(r["funding_usd"])}
    assert list(paid) == ["2022-01-01T07:59:00+00:00"]  # the bar whose interval holds 08:00
    assert sum(float(r["funding_usd"]) for r in rows) == stats.funding_usd == broker.portfolio.funding_paid_usd > 0
    assert stats.gross_pnl_usd == pytest.approx(stats.pnl_usd + stats.fees_usd + stats.funding_usd, rel=1e-12)

    # research: the same bars, decisions and fills in the environment
    feats = rl_features(bars, list(agent.observation_builder.feature_names), warmup_bars=WARMUP)
    names = list(agent.observation_builder.feature_names)
    env = TradingEnv(bars, observation_builder=ObservationBuilder(names, WINDOW, FeatureScaler.fit(feats, names)),
                     action_interpreter=ActionInterpreter(1.0), fill_model=FillModel(5.0, 1.0), features=feats,
                     warmup_bars=WARMUP, start_ts=bars["ts"][lead], funding=_funding())
    env.reset()
    research, done = 0.0, False
    while not done:
        _, _, term, trunc, info = env.step(np.array([0.8], dtype=np.float32))
        research += info["funding_usd"]
        done = term or trunc
    assert env.portfolio.n_trades == stats.trades - 1  # the session also trades its last bar (at the close)
    assert research == env.portfolio.funding_paid_usd == stats.funding_usd
