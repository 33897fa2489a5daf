"""The short causal depthwise convolution that H3, Mamba, Hyena, DeltaNet and Mamba-2 put before
their token mixing, with its generation state (the last ``conv_size - 1`` inputs).

It is an ``nn.Conv1d`` (depthwise, PyTorch's default initialisation, as in the papers' code) applied
causally: the state is prepended instead of zero padding, so a sequence split into pieces gives the
outputs of one pass."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ShortConv(nn.Conv1d):
    """Depthwise causal convolution over time of ``conv_size`` taps on ``(batch, seq, channels)``."""

    def __init__(self, channels: int, conv_size: int = 4, bias: bool = True) -> None:
        super().__init__(channels, channels, conv_size, groups=channels, bias=bias)
        self.conv_size = conv_size

    def init_state(self, batch: int, device, dtype) -> torch.Tensor:
        """The zero history ``[B, conv_size - 1, channels]``."""
        return torch.zeros(batch, self.conv_size - 1, self.in_channels, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(outputs ``(batch, seq, channels)``, the new state) for ``x`` after the history ``state``."""
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        history = torch.cat([state.to(x.dtype), x], dim=1)
        y = F.conv1d(history.transpose(1, 2), self.weight, self.bias, groups=self.groups)
        return y.transpose(1, 2), history[:, history.shape[1] - (self.conv_size - 1):]
