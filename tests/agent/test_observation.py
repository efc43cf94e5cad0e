from __future__ import annotations

import numpy as np
import pytest

from quantnb.agent import ActionInterpreter, FeatureScaler, ObservationBuilder, PortfolioState
from quantnb.errors import ConfigError, DataError, OperationalError


def _builder(window: int = 3) -> ObservationBuilder:
    sc = FeatureScaler(["a", "b"], mean=[1.0, -2.0], std=[2.0, 4.0], clip_sigma=5.0)
    return ObservationBuilder(["a", "b"], window, sc, state_clip=10.0)


def test_observation_layout_shape_dtype_and_space():
    b = _builder()
    raw = np.array([[1.0, -2.0], [3.0, 2.0], [101.0, -6.0]])  # oldest first
    obs = b.build(raw, PortfolioState(0.5, -0.01, 1.2))
    assert obs.shape == (b.n_obs,) == (3 * 2 + 3,)
    assert obs.dtype == np.float32
    expected = [0.0, 0.0, 1.0, 1.0, 5.0, -1.0, 0.5, -0.01, 1.2]  # 101 clipped at 5 sigma
    np.testing.assert_allclose(obs, np.array(expected, dtype=np.float32))
    assert b.observation_space().contains(obs)
    clipped = b.build(raw, PortfolioState(50.0, 0.0, 1.0))
    assert clipped[-3] == 10.0 and b.observation_space().contains(clipped)
    np.testing.assert_array_equal(b.build_scaled(b.scaler.transform(raw), PortfolioState(0.5, -0.01, 1.2)), obs)


def test_observation_refuses_wrong_shape_nan_and_mismatched_scaler():
    b = _builder()
    with pytest.raises(ConfigError, match=r"expected \(3, 2\)"):
        b.build(np.zeros((2, 2)), PortfolioState(0, 0, 1))
    with pytest.raises(DataError, match="feature 'b' is nan"):
        b.build(np.array([[0, 0], [0, np.nan], [0, 0]]), PortfolioState(0, 0, 1))
    with pytest.raises(ConfigError, match="differ from the scaler"):
        ObservationBuilder(["b", "a"], 3, b.scaler)
    with pytest.raises(OperationalError, match="equity must be positive"):
        PortfolioState.from_account(position_qty=1, avg_entry_price_usd=1, equity_usd=0, initial_equity_usd=1,
                                    mark_price_usd=1)


def test_action_interpreter_clips_scales_and_applies_deadband():
    ai = ActionInterpreter(max_position_frac=0.5, deadband_frac=0.05)
    assert ai.target_frac(np.array([0.4], dtype=np.float32)) == pytest.approx(0.2)
    assert ai.target_frac(3.0) == 0.5 and ai.target_frac(-7.0) == -0.5
    d = ai.decide(np.array([[0.4]]), current_frac=0.18)
    assert d.target_frac == pytest.approx(0.2) and not d.rebalance
    d = ai.decide(np.array([0.4]), current_frac=0.1)
    assert d.rebalance and d.action_raw == pytest.approx(0.4)
    assert ActionInterpreter.action_space().shape == (1,)
    with pytest.raises(OperationalError, match="not one finite number"):
        ai.decide(np.array([np.nan]), 0.0)
    with pytest.raises(ConfigError, match="max_position_frac"):
        ActionInterpreter(0.0)
    with pytest.raises(ConfigError, match="deadband_frac"):
        ActionInterpreter(1.0, deadband_frac=1.0)
