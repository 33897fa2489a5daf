"""ByteNet's residual block of dilated convolutions (Kalchbrenner, Espeholt, Simonyan, van den Oord,
Graves, Kavukcuoglu 2016, "Neural Machine Translation in Linear Time", arXiv:1610.10099, §3.3-3.4,
Figure 3).

The block narrows the width to d/2, applies a convolution of ``conv_size`` taps spaced ``dilation``
apart — masked (causal) in the decoder, centred in the encoder — and widens back::

    y = W_3 ReLU(LN(conv_dil(ReLU(LN(W_1 ReLU(LN(x))))))),

with the dilation doubling with depth (1, 2, 4, 8, 16, then again from 1), so a stack's receptive
field grows exponentially. The block's residual is the backbone's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.errors import IncompatibleError
from trevo.registry import Paper, register

DILATION_CYCLE = 5  # the paper's rates 1, 2, 4, 8, 16, repeated


@register("mixer", "bytenet", paper=Paper("Neural Machine Translation in Linear Time", "1610.10099", 2016),
          category="CrossAttention", family="bytenet", causal=True, bidirectional=True, recurrent=True,
          time="O(T·k·d²)", memory="O((k−1)·dilation·d) state")
class ByteNetBlock(TokenMixer):
    """ByteNet residual block (Kalchbrenner et al. 2016, Figure 3, left): LN-ReLU-1×1 (d → d/2),
    LN-ReLU-dilated convolution of ``conv_size`` taps (d/2 → d/2), LN-ReLU-1×1 (d/2 → d). The
    dilation is 2^(layer_idx mod 5) unless given. Causal: the masked convolution of the decoder (taps
    at t, t − r, …, t − (k−1)r); bidirectional: the centred one of the encoder. Generation keeps the
    last (k − 1)·r inputs of the convolution."""

    def __init__(self, d_model: int, *, causal: bool = True, conv_size: int = 3, dilation: int | None = None,
                 layer_idx: int = 0) -> None:
        super().__init__(d_model, causal=causal)
        if conv_size < 1 or (not causal and conv_size % 2 == 0):
            raise IncompatibleError(f"ByteNet's conv_size must be >= 1 (and odd for the centred encoder "
                                    f"convolution), got {conv_size}")
        half = max(1, d_model // 2)
        self.conv_size = conv_size
        self.dilation = dilation if dilation is not None else 2 ** (layer_idx % DILATION_CYCLE)
        if self.dilation < 1:
            raise IncompatibleError(f"ByteNet's dilation must be >= 1, got {self.dilation}")
        self.norms = nn.ModuleList([nn.LayerNorm(d_model), nn.LayerNorm(half), nn.LayerNorm(half)])
        self.narrow = nn.Linear(d_model, half)
        self.conv = nn.Conv1d(half, half, conv_size, dilation=self.dilation)
        self.widen = nn.Linear(half, d_model)

    def _reach(self) -> int:
        return (self.conv_size - 1) * self.dilation

    def _into_conv(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norms[1](self.narrow(F.relu(self.norms[0](x)))))

    def _out_of_conv(self, c: torch.Tensor) -> torch.Tensor:
        return self.widen(F.relu(self.norms[2](c)))

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        u = self._into_conv(x)
        if padding_mask is not None:  # padded positions feed the centred convolution nothing
            u = torch.where(padding_mask[..., None], u, torch.zeros_like(u))
        side = self._reach() // 2
        c = self.conv(F.pad(u.transpose(1, 2), (side, side))).transpose(1, 2)
        return self._out_of_conv(c)

    def init_state(self, batch: int, device, dtype) -> State:
        return {"conv": torch.zeros(batch, self._reach(), self.conv.in_channels, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        history = torch.cat([state["conv"].to(x.dtype), self._into_conv(x)], dim=1)
        c = self.conv(history.transpose(1, 2)).transpose(1, 2)
        return self._out_of_conv(c), {"conv": history[:, history.shape[1] - self._reach():]}
