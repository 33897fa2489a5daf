"""Ripple attention: spatially weighted linear attention on a 2-D grid (Zheng et al. 2021); see ``trevo.ops.ripple``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.errors import IncompatibleError
from trevo.ops.ripple import ripple_local, ripple_prefix, ripple_quadratic
from trevo.registry import Paper, register


@register("mixer", "ripple_attention",
          paper=Paper("Ripple Attention for Visual Perception with Sub-quadratic Complexity", "2110.02453", 2021),
          category="MHA/Others", family="ripple", causal=False, bidirectional=True, needs_2d=True,
          time="O(N·(r̂²·d + d²/h)) local, O(N·r̂·d²/h) prefix, O(N²·d) quadratic",
          memory="O(N·r̂²·h + d²/h)", test_options={"n_rings": 2})
class RippleAttention(TokenMixer):
    """Ripple attention (Zheng et al. 2021, section 3): linear attention with φ = elu + 1 in which the
    term of key j for query i is weighted by a stick-breaking weight α_r of their Chebyshev ring
    r = max(|Δrow|, |Δcol|) on the image grid — learned per head for r < r̂ = ``n_rings``, the rest of
    the stick shared by all farther rings — so near tokens count more, smoothly ("ripples"). Needs the
    2-D layout; bidirectional; padded tokens contribute nothing. Forms ``local`` (a global sum at the
    far rings' common weight plus a local window), ``prefix`` (summed-area tables) and ``quadratic``."""

    forms = ("local", "prefix", "quadratic")

    def __init__(self, d_model: int, *, causal: bool = False, n_heads: int = 4, n_rings: int = 4,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        if n_rings < 1:
            raise IncompatibleError(f"ripple_attention needs n_rings >= 1, got {n_rings}")
        self.n_heads, self.head_dim = n_heads, head_dim_of(d_model, n_heads)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)
        self.ring_logits = nn.Parameter(torch.zeros(n_heads, n_rings))

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        grid = self.grid(x, layout)
        q, k, v = (split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))
        q, k = F.elu(q) + 1, F.elu(k) + 1
        if padding_mask is not None:
            k = k * padding_mask[:, None, :, None].to(k.dtype)
        op = {"local": ripple_local, "prefix": ripple_prefix, "quadratic": ripple_quadratic}
        op = op[self.form_for(x.shape[1])]
        return self.out_proj(merge_heads(op(q, k, v, self.ring_logits.to(x.dtype), grid)))
