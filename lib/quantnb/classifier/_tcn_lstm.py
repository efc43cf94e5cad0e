from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from quantnb.classifier._config import ModelConfig, _whole
from quantnb.errors import ConfigError

_M = ModelConfig  # the architecture's defaults are ModelConfig's


class CausalConvBlock(nn.Module):
    """One residual TCN block: two causal dilated convolutions, each with ReLU and dropout, and a residual.

    Bai, Kolter and Koltun, arXiv:1803.01271, 2018, section 3. Weight normalisation is left out: AdamW
    with weight decay trains these small blocks stably.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.pad = (kernel_size - 1) * dilation
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, dilation=dilation)
        self.dropout = nn.Dropout(dropout)
        self.downsample = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``x``, shape (batch, in_channels, seq_len), to (batch, out_channels, seq_len), causally."""
        out = self.dropout(F.relu(self.conv1(F.pad(x, (self.pad, 0)))))
        out = self.dropout(F.relu(self.conv2(F.pad(out, (self.pad, 0)))))
        res = x if self.downsample is None else self.downsample(x)
        return F.relu(out + res)


class HybridTCNLSTM(nn.Module):
    """Causal dilated TCN blocks feeding an LSTM and a linear head: a 3-class bar classifier.

    The TCN (block ``i`` has dilation ``2**i``) extracts local patterns without looking ahead;
    the LSTM summarises the sequence; the head maps its last hidden state to class logits
    (0 SELL, 1 NEUTRAL, 2 BUY).

    Parameters
    ----------
    n_features : int
        Input features per time step, >= 1.
    tcn_channels, kernel_size, n_blocks, dropout, lstm_hidden, lstm_layers
        The architecture; defaults and ranges are :class:`~quantnb.classifier.ModelConfig`'s.
    n_classes : int
        Output classes, default 3.

    Raises
    ------
    ConfigError
        If a parameter is out of range (the message names it).

    References
    ----------
    Bai, Kolter and Koltun, arXiv:1803.01271, 2018 (TCN); Hochreiter and Schmidhuber,
    "Long Short-Term Memory", Neural Computation 9(8), 1997.
    """

    def __init__(self, n_features: int, tcn_channels: int = _M.tcn_channels, kernel_size: int = _M.kernel_size,
                 n_blocks: int = _M.n_blocks, dropout: float = _M.dropout, lstm_hidden: int = _M.lstm_hidden,
                 lstm_layers: int = _M.lstm_layers, n_classes: int = 3):
        super().__init__()
        arch = ModelConfig(tcn_channels=tcn_channels, kernel_size=kernel_size, n_blocks=n_blocks, dropout=dropout,
                           lstm_hidden=lstm_hidden, lstm_layers=lstm_layers)  # validates, naming the field
        _whole("n_features", n_features, 1)
        _whole("n_classes", n_classes, 2)
        self.n_features, self.n_classes = int(n_features), int(n_classes)
        self.tcn_channels, self.kernel_size, self.n_blocks = arch.tcn_channels, arch.kernel_size, arch.n_blocks
        self.dropout, self.lstm_hidden, self.lstm_layers = arch.dropout, arch.lstm_hidden, arch.lstm_layers
        chans = [self.n_features] + [self.tcn_channels] * self.n_blocks
        self.tcn = nn.Sequential(*(CausalConvBlock(chans[i], chans[i + 1], self.kernel_size, 2**i, self.dropout)
                                   for i in range(self.n_blocks)))
        self.lstm = nn.LSTM(self.tcn_channels, self.lstm_hidden, num_layers=self.lstm_layers, batch_first=True,
                            dropout=self.dropout if self.lstm_layers > 1 else 0.0)
        self.head = nn.Linear(self.lstm_hidden, self.n_classes)

    @property
    def config(self) -> dict[str, Any]:
        """Return the constructor arguments (enough to rebuild the model), JSON/YAML-ready."""
        return {"n_features": self.n_features, "tcn_channels": self.tcn_channels, "kernel_size": self.kernel_size,
                "n_blocks": self.n_blocks, "dropout": self.dropout, "lstm_hidden": self.lstm_hidden,
                "lstm_layers": self.lstm_layers, "n_classes": self.n_classes}

    @property
    def receptive_field(self) -> int:
        """Return the TCN receptive field, time steps: ``1 + 2 (kernel_size - 1)(2**n_blocks - 1)``."""
        return 1 + 2 * (self.kernel_size - 1) * (2**self.n_blocks - 1)

    def n_parameters(self) -> int:
        """Return the number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify windows of bars.

        Parameters
        ----------
        x : torch.Tensor, shape (batch, seq_len, n_features), float32
            Scaled features, oldest step first.

        Returns
        -------
        torch.Tensor, shape (batch, n_classes), float32
            Unnormalised logits (apply ``softmax`` for probabilities).

        Raises
        ------
        ConfigError
            If ``x`` is not 3-D with ``n_features`` on the last axis (a ``ValueError`` too).
        """
        if x.dim() != 3 or x.shape[-1] != self.n_features:
            raise ConfigError(f"x: shape {tuple(x.shape)}, expected (batch, seq_len, {self.n_features})")
        h = self.tcn(x.transpose(1, 2))                 # (batch, tcn_channels, seq_len)
        out, _ = self.lstm(h.transpose(1, 2))           # (batch, seq_len, lstm_hidden)
        return self.head(out[:, -1, :])                 # (batch, n_classes)
