"""SOFT: softmax-free attention with a Gaussian kernel and a Nyström approximation; math in ``trevo.ops.soft``."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.errors import IncompatibleError
from trevo.ops.soft import soft_attention
from trevo.registry import Paper, register


@register("mixer", "soft", paper=Paper("SOFT: Softmax-free Transformer with Linear Complexity", "2110.11945", 2021),
          category="MHA/Others", family="soft", causal=False, bidirectional=True,
          time="O(T·m·d + m³·n_iter)", memory="O(T·m)", test_options={"n_landmarks": 4, "n_iter": 10})
class Soft(TokenMixer):
    """SOFT attention (Lu et al. 2021, eq. 4-8): queries and keys share one projection, the kernel is
    the Gaussian exp(−‖q_i − k_j‖²/(2√d)) with no softmax, approximated by Nyström with ``n_landmarks``
    segment-mean landmarks and a Newton–Raphson pseudo-inverse (``n_iter`` iterations); y = Ŝ V.
    Bidirectional only (the landmarks pool the whole sequence)."""

    def __init__(self, d_model: int, *, causal: bool = False, n_heads: int = 4, n_landmarks: int = 32,
                 n_iter: int = 20) -> None:
        super().__init__(d_model, causal=causal)
        if n_landmarks < 1 or n_iter < 1:
            raise IncompatibleError(f"soft needs n_landmarks >= 1 and n_iter >= 1, got {n_landmarks}, {n_iter}")
        self.n_heads, self.head_dim = n_heads, head_dim_of(d_model, n_heads)
        self.n_landmarks, self.n_iter = n_landmarks, n_iter
        self.qv = nn.Linear(d_model, 2 * d_model, bias=False)  # one map for queries and keys, one for values
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q, v = (split_heads(t, self.n_heads) for t in self.qv(x).chunk(2, dim=-1))
        o = soft_attention(q, v, self.n_landmarks, n_iter=self.n_iter, key_padding_mask=padding_mask)
        return self.out_proj(merge_heads(o))
