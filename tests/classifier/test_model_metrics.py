from __future__ import annotations

import numpy as np
import pytest
import torch

from quantnb.classifier import HybridTCNLSTM, classification_scores, confusion_matrix
from quantnb.classifier._metrics import f1_from_confusion
from quantnb.errors import ConfigError


@pytest.mark.parametrize(("batch", "seq_len", "n_blocks", "layers"), [(1, 1, 1, 1), (4, 16, 2, 2), (3, 60, 3, 1)])
def test_logits_shape(batch: int, seq_len: int, n_blocks: int, layers: int) -> None:
    torch.manual_seed(0)
    model = HybridTCNLSTM(5, tcn_channels=6, kernel_size=3, n_blocks=n_blocks, dropout=0.1, lstm_hidden=7,
                          lstm_layers=layers)
    out = model(torch.randn(batch, seq_len, 5))
    assert out.shape == (batch, 3) and out.dtype == torch.float32
    assert HybridTCNLSTM(**model.config).config == model.config
    assert model.n_parameters() == sum(p.numel() for p in model.parameters())


def test_tcn_is_causal_with_the_stated_receptive_field() -> None:
    torch.manual_seed(0)
    model = HybridTCNLSTM(3, tcn_channels=4, kernel_size=2, n_blocks=3, dropout=0.0, lstm_hidden=4).eval()
    rf = model.receptive_field
    assert rf == 1 + 2 * (2 - 1) * (2**3 - 1)
    x = torch.randn(1, 40, 3, requires_grad=True)
    h = model.tcn(x.transpose(1, 2))            # (1, channels, 40)
    h[0, :, 30].sum().backward()
    grad = x.grad[0].abs().sum(dim=1)
    assert torch.all(grad[31:] == 0)            # nothing from the future
    assert torch.all(grad[:31 - rf] == 0)       # nothing beyond the receptive field
    assert grad[31 - rf:31].sum() > 0


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"n_features": 0}, "n_features"), ({"kernel_size": 1}, "kernel_size"), ({"dropout": 1.0}, "dropout"),
    ({"lstm_layers": 0}, "lstm_layers"), ({"tcn_channels": 2.5}, "tcn_channels"),
])
def test_bad_model_parameters_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        HybridTCNLSTM(**{"n_features": 4, **kwargs})


def test_wrong_input_shape_is_refused() -> None:
    with pytest.raises(ConfigError, match="n_features|shape"):
        HybridTCNLSTM(4)(torch.randn(2, 10, 5))


def test_f1_matches_hand_computation() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 1])
    cm = confusion_matrix(y_true, y_pred)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 1, 0]]
    s = f1_from_confusion(cm)
    # SELL: TP 2, FP 0, FN 1 -> 4/5; NEUTRAL: TP 1, FP 2, FN 1 -> 2/5; BUY: TP 0 -> 0
    assert s.f1_per_class == pytest.approx((0.8, 0.4, 0.0))
    assert s.f1_macro == pytest.approx(0.4)
    assert s.f1_weighted == pytest.approx((0.8 * 3 + 0.4 * 2 + 0.0 * 1) / 6)
    assert s.accuracy == pytest.approx(3 / 6)


def test_f1_edge_cases() -> None:
    perfect = classification_scores(np.array([0, 1, 2, 1]), np.array([0, 1, 2, 1]))
    assert perfect.f1_macro == 1.0 and perfect.f1_weighted == 1.0
    # BUY never true nor predicted: its F1 is 0 and still counts in the macro mean
    only_two = classification_scores(np.array([0, 1]), np.array([0, 1]))
    assert only_two.f1_per_class == (1.0, 1.0, 0.0) and only_two.f1_macro == pytest.approx(2 / 3)
    assert only_two.f1_weighted == 1.0
    empty = classification_scores(np.array([], dtype=int), np.array([], dtype=int))
    assert empty.f1_macro == 0.0 and empty.confusion.sum() == 0
    with pytest.raises(ConfigError, match="classes"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]))
    with pytest.raises(ConfigError, match="same length"):
        confusion_matrix(np.array([0, 1]), np.array([0]))
