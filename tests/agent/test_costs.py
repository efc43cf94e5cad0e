"""The execution-cost model against recorded books, by hand, and in the environment."""

from __future__ import annotations

import io
import json
import math
import zipfile

import numpy as np
import pytest

from quantnb.agent import BarQuote, FillModel, walk_book
from tests.agent._helpers import REPO

BYBIT = REPO / "data" / "samples" / "bybit"


@pytest.fixture
def warnings_logged():
    """Messages logged at WARNING or above while the test runs."""
    from loguru import logger

    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(str(m)), level="WARNING", format="{message}")
    yield messages
    logger.remove(sink)


def _snapshot(name: str) -> dict:
    """The first (snapshot) message of a bundled Bybit order-book file."""
    path = BYBIT / name
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            line = io.TextIOWrapper(z.open(z.namelist()[0])).readline()
    else:
        line = path.open().readline()
    msg = json.loads(line)
    assert msg["type"] == "snapshot"
    return msg["data"]


def _side(levels: list[list[str]], ascending: bool) -> list[tuple[float, float]]:
    out = [(float(p), float(q)) for p, q in levels if float(q) > 0]
    return sorted(out, reverse=not ascending)


def _hand_walk(levels: list[tuple[float, float]], qty: float) -> float:
    """Average price of ``qty`` through the levels, computed by cumulative sums (not the library's loop)."""
    px = np.array([p for p, _ in levels])
    sz = np.array([s for _, s in levels])
    cum = np.cumsum(sz)
    k = int(np.searchsorted(cum, qty))  # first level that completes the order
    full = px[:k] @ sz[:k]
    rest = qty - (cum[k - 1] if k else 0.0)
    return (full + rest * px[k]) / qty


@pytest.mark.parametrize("name,notionals_usd", [
    ("2026-08-09_BTCUSDT_ob200.data", [1e3, 1e5, 1e6, 3e6]),
    ("2024-12-01_XRPUSDT_ob500.data.zip", [1e4, 1e5, 1e6, 5e6]),
])
def test_book_fill_cost_per_unit_grows_with_size_and_equals_a_hand_walk(name, notionals_usd):
    data = _snapshot(name)
    asks, bids = _side(data["a"], True), _side(data["b"], False)
    mid = (asks[0][0] + bids[0][0]) / 2
    fm = FillModel(5.5, 0.0)  # Bybit taker; the book replaces slippage
    costs = []
    for notional in notionals_usd:
        qty = notional / mid
        buy = fm.fill(qty, mid, book=asks)
        sell = fm.fill(-qty, mid, book=bids)
        assert buy.price_usd == pytest.approx(_hand_walk(asks, qty), rel=1e-12)
        assert sell.price_usd == pytest.approx(_hand_walk(bids, qty), rel=1e-12)
        assert buy.impact_usd == pytest.approx(qty * (buy.price_usd - mid), rel=1e-9)
        assert sell.impact_usd == pytest.approx(qty * (mid - sell.price_usd), rel=1e-9)
        assert buy.fee_usd == pytest.approx(buy.notional_usd * 5.5e-4)
        assert buy.unfilled_qty == 0.0
        costs.append((buy.price_usd - mid) / mid * 1e4)
    assert all(b >= a for a, b in zip(costs, costs[1:], strict=False)), costs
    assert costs[-1] > costs[0] * 10, costs  # a large order pays far more per unit than a small one


def test_book_shorter_than_the_order_fills_partially():
    asks = _side(_snapshot("2026-08-09_BTCUSDT_ob200.data")["a"], True)
    total = sum(s for _, s in asks)
    fill = FillModel(5.5, 0.0).fill(total + 2.5, asks[0][0], book=asks)
    assert fill.qty == pytest.approx(total) and fill.unfilled_qty == pytest.approx(2.5)
    assert walk_book(asks, total)[1] == pytest.approx(fill.price_usd)


def test_default_is_the_flat_fee_plus_slippage_to_the_digit():
    fm = FillModel(5.0, 2.0)
    buy = fm.fill(0.5, 40_000.0, quote=BarQuote(spread_bps=3.0, sigma_frac=0.01, volume_usd=1e6))
    assert buy.price_usd == 40_000.0 * (1.0 + 2.0 / 1e4)  # quotes are ignored unless switched on
    assert buy.fee_usd == abs(0.5) * buy.price_usd * 5.0 / 1e4
    assert buy.impact_usd == pytest.approx(0.5 * 8.0)


def test_spread_and_square_root_impact_by_hand(warnings_logged):
    fm = FillModel(5.0, 1.0, cross_spread=True, impact_coef=0.8, capacity_frac=0.1)
    q = BarQuote.from_bar(high=40_400.0, low=39_600.0, close=40_000.0, volume_usd=2e6, spread_bps=2.0,
                          bid_depth_qty=3.0, ask_depth_qty=5.0)
    sigma = math.log(40_400 / 39_600) / math.sqrt(4 * math.log(2))  # Parkinson over one bar
    assert q.sigma_frac == pytest.approx(sigma) and q.ask_depth_usd == 200_000.0
    small, big = fm.fill(0.01, 40_000.0, quote=q), fm.fill(1.0, 40_000.0, quote=q)
    for f in (small, big):
        n = abs(f.qty) * 40_000.0
        expected = 40_000.0 * (1 + 1e-4) * (1 + 2.0 / 2e4 + 0.8 * sigma * math.sqrt(n / 2e6))
        assert f.price_usd == pytest.approx(expected, rel=1e-14)
    assert big.impact_usd / big.qty > small.impact_usd / small.qty  # cost per unit grows with size
    assert any("capacity share" in m for m in warnings_logged)  # 40k USD > 10 % of 200k ask depth
    sell = fm.fill(-1.0, 40_000.0, quote=q)
    assert sell.price_usd == pytest.approx(40_000.0 * (1 - 1e-4) * (1 - 2.0 / 2e4 - 0.8 * sigma * math.sqrt(0.02)))


def test_portfolio_cost_summary_reports_cost_bps_fees_impact():
    from quantnb.agent import Portfolio

    pf = Portfolio(10_000.0)
    fm = FillModel(5.0, 2.0)
    pf.apply(fm.fill(0.1, 40_000.0))
    pf.apply(fm.fill(-0.1, 41_000.0))
    s = pf.cost_summary()
    traded = 0.1 * 40_008.0 + 0.1 * 40_991.8
    assert s["fees_usd"] == pytest.approx(traded * 5e-4)
    assert s["impact_usd"] == pytest.approx(0.1 * 8.0 + 0.1 * 8.2)
    assert s["cost_bps"] == pytest.approx((s["fees_usd"] + s["impact_usd"]) / traded * 1e4)
    assert s["funding_usd"] == 0.0


def test_square_root_coefficient_fitted_from_a_recorded_book_by_hand():
    from quantnb.agent._costs import fit_impact_coef

    data = _snapshot("2024-12-01_XRPUSDT_ob500.data.zip")
    asks, bids = _side(data["a"], True), _side(data["b"], False)
    mid = (asks[0][0] + bids[0][0]) / 2
    sizes, sigma, vol = [1e5, 1e6, 3e6], 0.002, 5e7
    xs = [sigma * math.sqrt(n / vol) for n in sizes]
    cs = [(_hand_walk(asks, n / mid) - asks[0][0]) / mid for n in sizes]
    y = fit_impact_coef(asks, mid, sigma, vol, sizes)
    assert y == pytest.approx(sum(c * x for c, x in zip(cs, xs, strict=True)) / sum(x * x for x in xs), rel=1e-9)
    assert y > 0
    # the fitted model prices a 1M USD buy within a factor 2 of the walk (beyond the touch)
    fm = FillModel(0.0, 0.0, impact_coef=y)
    fill = fm.fill(1e6 / mid, asks[0][0], quote=BarQuote(sigma_frac=sigma, volume_usd=vol))
    model_cost = fill.price_usd / asks[0][0] - 1
    assert 0.5 < model_cost / cs[1] < 2.0


def test_replace_keeps_every_other_setting():
    fm = FillModel.for_venue("bybit_linear", 1.0, cross_spread=True, impact_coef=0.3)
    assert (fm.fee_bps, fm.maker_fee_bps) == (5.5, 2.0)
    r = fm.replace(fee_bps=4.0)
    assert (r.fee_bps, r.maker_fee_bps, r.slippage_bps, r.cross_spread, r.impact_coef) == (4.0, 2.0, 1.0, True, 0.3)


def test_env_spec_selects_the_cost_model_and_the_bundle_carries_it(tmp_path):
    from stable_baselines3 import SAC
    from stable_baselines3.common.vec_env import DummyVecEnv

    from quantnb.agent import MARGIN_TIERS, AgentMetadata, EnvSpec, MarketRules, load_agent_bundle, save_agent_bundle
    from tests.agent._helpers import WARMUP, WINDOW, eval_env

    flat = EnvSpec().cost_setup("BTC-PERP")  # the default: today's flat model, nothing else
    assert (flat["fill_model"].fee_bps, flat["fill_model"].slippage_bps, flat["fill_model"].uses_quotes) == (5.0, 1.0,
                                                                                                          False)
    assert flat["market_rules"] is flat["funding"] is flat["margin_tiers"] is None
    env = eval_env()
    model = SAC("MlpPolicy", DummyVecEnv([lambda: env]), policy_kwargs={"net_arch": [8]}, buffer_size=10, seed=1,
                device="cpu", verbose=0)
    meta = AgentMetadata(window=WINDOW, warmup_bars=WARMUP, fee_bps=5.5, symbol="BTCUSDT", timeframe="1m",
                         cross_spread=True, impact_coef=0.4, venue_rules="bybit_linear", funding_rate=0.0001)
    save_agent_bundle(tmp_path / "run", model, env.builder.scaler, meta)
    b = load_agent_bundle(tmp_path / "run")
    fm = b.fill_model
    assert (fm.fee_bps, fm.cross_spread, fm.impact_coef) == (5.5, True, 0.4)
    setup = b.metadata.env.cost_setup(b.metadata.symbol)
    assert setup["market_rules"] == MarketRules.for_venue("bybit_linear", "BTCUSDT")
    assert setup["funding"].rate_at(None) == 0.0001 and setup["margin_tiers"] is MARGIN_TIERS.get(("bybit_linear",
                                                                                                   "BTCUSDT"))
