"""Neighborhood attention over an image (Hassani et al., "Neighborhood Attention Transformer",
arXiv:2204.07143). The math lives in ``trevo.ops.neighborhood_attention``."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import TokenMixer
from trevo.components.multihead import FusedQKVHeads
from trevo.errors import IncompatibleError
from trevo.ops.neighborhood_attention import neighborhood, neighborhood_attention, relative_bias
from trevo.registry import Paper, register


@register("mixer", "neighborhood_attention", paper=Paper("Neighborhood Attention Transformer", "2204.07143", 2022),
          category="MHA/LocalGlobal", family="neighborhood_attention", causal=False, bidirectional=True,
          needs_2d=True, time="O(T·k²·d), k = window", memory="O(T·k²) scores", test_options={"window": 3})
class NeighborhoodAttention(FusedQKVHeads, TokenMixer):
    """NA (eq. 2): each pixel attends to its ``window`` × ``window`` nearest pixels (the window centred
    on it, shifted inwards at the borders so that it always holds k² keys), softmax(q·k/√d + B) v with
    a learned relative position bias B ∈ R^{(2k−1)×(2k−1)} per head. ``window`` must be odd and at most
    the image's height and width."""

    def __init__(self, d_model: int, *, causal: bool = False, n_heads: int = 4, window: int = 7) -> None:
        super().__init__(d_model, causal=causal)
        if window < 1 or window % 2 == 0:
            raise IncompatibleError(f"neighborhood_attention: window (the neighbourhood's side) must be odd and >= 1, "
                                    f"got {window}")
        self.window = window
        self.init_heads(d_model, n_heads, bias=True)
        self.bias_table = nn.Parameter(0.02 * torch.randn(n_heads, 2 * window - 1, 2 * window - 1))

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        size = self.grid(x, layout)
        keys, offsets = neighborhood(size, self.window, x.device)
        q, k, v = self.qkv_heads(x)
        o = neighborhood_attention(q, k, v, keys, bias=relative_bias(self.bias_table, offsets),
                                   key_padding_mask=padding_mask)
        return self.project_out(o)
