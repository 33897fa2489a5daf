"""Branchformer: global self-attention and a local convolutional gating MLP in parallel, merged
(Peng, Dalmia, Lane, Watanabe 2022, "Branchformer: Parallel MLP-Attention Architectures to Capture
Local and Global Context for Speech Recognition and Understanding", arXiv:2207.02971, §3).

    y_att = MHSA(LN(x)),   y_mlp = cgMLP(LN(x)),   y = W_merge [y_att; y_mlp]

cgMLP (§3.2): Z = GELU(W_up x) split into Z₁, Z₂; the convolutional spatial gating unit
CSGU(Z) = Z₁ ⊙ DWConv(LN(Z₂)) (a depthwise convolution over time); y_mlp = W_down CSGU(Z).
The attention branch is the registered ``softmax_attention``; causal use makes the depthwise
convolution causal (trevo's ``ShortConv``) and the attention masked.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.short_conv import ShortConv
from trevo.errors import IncompatibleError
from trevo.registry import Paper, build, register


@register("mixer", "branchformer", paper=Paper("Branchformer: Parallel MLP-Attention Architectures to Capture "
                                               "Local and Global Context for Speech Recognition and Understanding",
                                               "2207.02971", 2022),
          category="Arch", family="branchformer", causal=True, bidirectional=True, recurrent=False,
          relative_positions=("rope", "alibi"),
          time="O(T²·d) attention + O(T·(expand·d² + conv_size·expand·d)) cgMLP", memory="O(T·d) KV cache",
          test_options={"n_heads": 2, "conv_size": 3, "chunk_size": 8})
class Branchformer(TokenMixer):
    """Branchformer's two branches and their concat merge (Peng et al. 2022, eq. 1-7): multi-head
    softmax attention on LN(x) (global), cgMLP on LN(x) (local: GELU(W_up x) = [Z₁, Z₂],
    Z₁ ⊙ DWConv(LN(Z₂)) with ``conv_size`` taps, W_down), then W_merge [y_att; y_mlp]. Causal: masked
    attention with a KV cache and a causal depthwise convolution; bidirectional: a centred one
    (``conv_size`` odd). The paper's default conv_size is 31."""

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, expand: int = 6, conv_size: int = 31,
                 chunk_size: int = 128, position: nn.Module | None = None) -> None:
        super().__init__(d_model, causal=causal)
        if not causal and conv_size % 2 == 0:
            raise IncompatibleError(f"Branchformer's bidirectional convolution is centred: conv_size must be odd, "
                                    f"got {conv_size}")
        hidden = expand * d_model // 2
        if hidden < 1:
            raise IncompatibleError(f"Branchformer expand={expand} leaves no cgMLP width for d_model={d_model}")
        self.attn_norm, self.mlp_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.gate_norm = nn.LayerNorm(hidden)
        self.attention = build("mixer", "softmax_attention", {"n_heads": n_heads, "chunk_size": chunk_size},
                               d_model=d_model, causal=causal, position=position)
        self.up_proj = nn.Linear(d_model, 2 * hidden)
        self.conv = ShortConv(hidden, conv_size)
        self.down_proj = nn.Linear(hidden, d_model)
        self.merge_proj = nn.Linear(2 * d_model, d_model)

    def _gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z1, z2 = F.gelu(self.up_proj(self.mlp_norm(x))).chunk(2, dim=-1)
        return z1, self.gate_norm(z2)

    def _merge(self, attended: torch.Tensor, z1: torch.Tensor, conv: torch.Tensor) -> torch.Tensor:
        return self.merge_proj(torch.cat([attended, self.down_proj(z1 * conv)], dim=-1))

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        attended = self.attention(self.attn_norm(x), padding_mask=padding_mask, layout=layout)
        z1, z2 = self._gates(x)
        if padding_mask is not None:  # padded positions feed the centred convolution nothing
            z2 = torch.where(padding_mask[..., None], z2, torch.zeros_like(z2))
        side = (self.conv.conv_size - 1) // 2
        conv = F.conv1d(F.pad(z2.transpose(1, 2), (side, side)), self.conv.weight, self.conv.bias,
                        groups=self.conv.groups).transpose(1, 2)
        return self._merge(attended, z1, conv)

    def init_state(self, batch: int, device, dtype) -> State:
        state = self.attention.init_state(batch, device, dtype)  # the KV cache: k, v
        return {**state, "conv": self.conv.init_state(batch, device, dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        attn_state = {k: v for k, v in state.items() if k != "conv"}
        attended, attn_state = self.attention.causal_forward(self.attn_norm(x), attn_state)
        z1, z2 = self._gates(x)
        conv, conv_state = self.conv(z2, state["conv"])
        return self._merge(attended, z1, conv), {**attn_state, "conv": conv_state}
