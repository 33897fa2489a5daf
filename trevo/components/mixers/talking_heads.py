"""Talking-heads attention: softmax attention whose heads exchange information through learned maps
across heads, before and after the softmax (kind ``mixer``; the math in ``trevo.ops.talking_heads``)."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.mixers.softmax_attention import RELATIVE_POSITIONS, SoftmaxAttention
from trevo.ops.talking_heads import talking_heads_attention
from trevo.registry import Paper, register


@register("mixer", "talking_heads", paper=Paper("Talking-Heads Attention", "2003.02436", 2020),
          category="Head", family="talking_heads", causal=True, bidirectional=True,
          relative_positions=RELATIVE_POSITIONS,
          time="O(T²·(d + H²))", memory="O(H·T²); KV cache O(T·d)")
class TalkingHeadsAttention(SoftmaxAttention):
    """Talking-heads attention (Shazeer et al. 2020): multi-head attention with the logits of the heads
    mixed by a learned P_l ``[H, H]`` before the softmax and the weights mixed by P_w ``[H, H]`` after
    it. P_l and P_w start at the identity plus N(0, 0.1²) noise (trevo's choice), so the layer starts
    close to multi-head attention. One form: the score matrix is materialised."""

    forms = ()

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, head_dim: int | None = None,
                 bias: bool = False, position: nn.Module | None = None) -> None:
        super().__init__(d_model, causal=causal, n_heads=n_heads, head_dim=head_dim, bias=bias, position=position)
        self.logits_mix = nn.Parameter(torch.eye(n_heads) + 0.1 * torch.randn(n_heads, n_heads))
        self.weights_mix = nn.Parameter(torch.eye(n_heads) + 0.1 * torch.randn(n_heads, n_heads))

    def _attend(self, q, k, v, padding_mask):
        return talking_heads_attention(q, k, v, self.logits_mix, self.weights_mix, causal=self.causal,
                                       bias=self.position_bias(q, k), key_padding_mask=padding_mask)
