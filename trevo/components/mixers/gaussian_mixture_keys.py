"""Transformer-MGK: attention whose keys are mixtures of Gaussians (kind ``mixer``; the math in
``trevo.ops.gaussian_mixture_keys``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.mixers.softmax_attention import relative_score_bias
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.components.rotary import check_rotary_head_dim
from trevo.errors import IncompatibleError
from trevo.ops.gaussian_mixture_keys import gaussian_mixture_attention
from trevo.registry import Paper, register


@register("mixer", "gaussian_mixture_keys",
          paper=Paper("Improving Transformers with Probabilistic Attention Keys", "2110.14401", 2022),
          category="Softmax", family="gaussian_mixture_keys", causal=True, bidirectional=True,
          relative_positions=("rope", "xpos", "alibi", "t5_bias", "kerple_log", "kerple_power"),
          time="O(T²·M·d)", memory="O(M·T²); KV cache O(M·T·d)")
class GaussianMixtureKeys(TokenMixer):
    """Attention with a mixture of Gaussian keys (Transformer-MGK, Nguyen et al. 2022): per head,
    ``n_components`` key projections give each position M means k_jr, and query i weighs position j
    by Σ_r π_r exp(−‖q_i − k_jr‖²/2σ²), normalised over the positions; π is learned per head (a softmax
    over M, initialised uniform) and σ² = √d is fixed (so one component is softmax attention with a
    −‖k‖²/2√d key term). The KV cache holds the M means of every position and its value."""

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, head_dim: int | None = None,
                 n_components: int = 2, bias: bool = False, position: nn.Module | None = None) -> None:
        super().__init__(d_model, causal=causal)
        if n_components < 1:
            raise IncompatibleError(f"gaussian_mixture_keys needs n_components >= 1, got {n_components}")
        self.n_heads, self.head_dim = n_heads, head_dim_of(d_model, n_heads, head_dim)
        check_rotary_head_dim(self.head_dim, position)
        self.n_components = n_components
        width = n_heads * self.head_dim
        self.q_proj = nn.Linear(d_model, width, bias=bias)
        self.k_proj = nn.Linear(d_model, n_components * width, bias=bias)  # the M means, one projection each
        self.v_proj = nn.Linear(d_model, width, bias=bias)
        self.out_proj = nn.Linear(width, d_model, bias=bias)
        self.prior_logits = nn.Parameter(torch.zeros(n_heads, n_components))
        self.position = position
        if position is not None and hasattr(position, "attach"):
            position.attach(n_heads=n_heads, head_dim=self.head_dim, causal=causal)

    def _project(self, x: torch.Tensor, offset: int):
        q, v = split_heads(self.q_proj(x), self.n_heads), split_heads(self.v_proj(x), self.n_heads)
        b, t = x.shape[:2]
        keys = self.k_proj(x).view(b, t, self.n_components, self.n_heads, self.head_dim).permute(0, 3, 2, 1, 4)
        if self.position is not None and hasattr(self.position, "rotate"):
            q = self.position.rotate(q, offset)
            keys = self.position.rotate(keys.flatten(1, 2), offset, key=True).unflatten(1, (self.n_heads, -1))
        return q, keys, v  # keys [B, H, M, T, D]

    def _attend(self, q, keys, v, padding_mask):
        bias = relative_score_bias(self.position, q, v)  # distance biases only: v has the key positions' shape
        return gaussian_mixture_attention(q, keys, v, F.log_softmax(self.prior_logits, dim=-1),
                                          variance=math.sqrt(self.head_dim), causal=self.causal, bias=bias,
                                          key_padding_mask=padding_mask)

    def bidirectional_forward(self, x, padding_mask, layout):
        q, keys, v = self._project(x, 0)
        return self.out_proj(merge_heads(self._attend(q, keys, v, padding_mask)))

    def init_state(self, batch: int, device, dtype) -> State:
        return {"k": torch.zeros(batch, self.n_heads, self.n_components, 0, self.head_dim, device=device, dtype=dtype),
                "v": torch.zeros(batch, self.n_heads, 0, self.head_dim, device=device, dtype=dtype)}

    def causal_forward(self, x, state):
        q, keys, v = self._project(x, state["v"].shape[2])
        keys, v = torch.cat([state["k"], keys], dim=3), torch.cat([state["v"], v], dim=2)
        return self.out_proj(merge_heads(self._attend(q, keys, v, None))), {"k": keys, "v": v}
