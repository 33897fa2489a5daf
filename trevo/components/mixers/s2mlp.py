"""Spatial-shift MLPs for images: S2-MLP and S2-MLPv2.

Yu et al., "S2-MLP: Spatial-Shift MLP Architecture for Vision" (arXiv:2106.07477) and
"S2-MLPv2: Improved Spatial-Shift MLP Architecture for Vision" (arXiv:2108.01072). Token mixing is
a fixed shift of channel groups by one position on the (H, W) grid; v2 mixes three branches
(two shift patterns and the identity) with split attention (seed 002)::

    a = Σ_k 1ᵀ X_k,  â = W₂ σ(W₁ a),  ā = softmax_k(reshape(â, K × c)),  out = Σ_k ā_k ⊙ X_k.

The positions are a row-major (H, W) grid given by ``layout``; a 1-D layout is refused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import TokenMixer
from trevo.errors import IncompatibleError
from trevo.registry import Paper, register

S2MLP_PAPER = Paper("S2-MLP: Spatial-Shift MLP Architecture for Vision", "2106.07477", 2021)
S2MLPV2_PAPER = Paper("S2-MLPv2: Improved Spatial-Shift MLP Architecture for Vision", "2108.01072", 2021)

# (axis, step) per channel quarter: axis 1 = rows (H), axis 2 = columns (W); +1 moves content
# down/right. These are the papers' spatial_shift1 and spatial_shift2.
SHIFT1 = ((1, 1), (1, -1), (2, 1), (2, -1))
SHIFT2 = ((2, 1), (2, -1), (1, 1), (1, -1))


def spatial_shift(x: torch.Tensor, pattern: tuple[tuple[int, int], ...] = SHIFT1) -> torch.Tensor:
    """Shift channel quarter g of ``x`` ``[B, H, W, C]`` one step along ``pattern[g]``; positions a
    shift leaves empty keep their own value (the papers' in-place slice assignment)."""
    out = x.clone()
    q = x.shape[-1] // 4
    for g, (axis, step) in enumerate(pattern):
        chans = slice(g * q, (g + 1) * q)
        n = x.shape[axis]
        src = [slice(None)] * 3 + [chans]
        dst = [slice(None)] * 3 + [chans]
        src[axis] = slice(0, n - 1) if step > 0 else slice(1, n)
        dst[axis] = slice(1, n) if step > 0 else slice(0, n - 1)
        out[tuple(dst)] = x[tuple(src)]
    return out


def split_attention(xs: torch.Tensor, fc1: nn.Linear, fc2: nn.Linear) -> torch.Tensor:
    """``xs`` ``[B, K, n, c]`` → Σ_k softmax_k(W₂ GELU(W₁ a))_k ⊙ X_k with a = Σ_k Σ_n X_k (seed 002)."""
    B, K, _, c = xs.shape
    a = xs.sum(dim=(1, 2))
    weights = torch.softmax(fc2(F.gelu(fc1(a))).reshape(B, K, c), dim=1)
    return (weights[:, :, None, :] * xs).sum(dim=1)


class _SpatialShiftMixer(TokenMixer):

    def __init__(self, d_model: int, *, causal: bool) -> None:
        super().__init__(d_model, causal=causal)
        if d_model % 4:
            raise IncompatibleError(f"{type(self).__name__} shifts four channel groups; d_model={d_model} "
                                    "must be divisible by 4")

    @staticmethod
    def _mask(x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        # Padded positions are zeroed so that shifts carry nothing of them into real positions.
        return x if padding_mask is None else torch.where(padding_mask[..., None], x, torch.zeros_like(x))


@register("mixer", "s2mlp", paper=S2MLP_PAPER, category="FFN", family="s2mlp", causal=False, bidirectional=True,
          needs_2d=True, time="O(T·d²)", memory="O(T·d)")
class S2MLP(_SpatialShiftMixer):
    """S2-MLP token mixing: W₂ shift(GELU(W₁ x)) with the four channel quarters shifted one step
    down, up, right and left on the (H, W) grid (Yu et al. 2021, §3.2)."""

    def __init__(self, d_model: int, *, causal: bool = False) -> None:
        super().__init__(d_model, causal=causal)
        self.fc1 = nn.Linear(d_model, d_model)
        self.fc2 = nn.Linear(d_model, d_model)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        H, W = self.grid(x, layout)
        h = self._mask(F.gelu(self.fc1(x)), padding_mask)
        shifted = spatial_shift(h.unflatten(1, (H, W))).flatten(1, 2)
        return self.fc2(shifted)


@register("mixer", "s2mlpv2", paper=S2MLPV2_PAPER, category="FFN", family="s2mlp", causal=False,
          bidirectional=True, needs_2d=True, time="O(T·d²)", memory="O(T·d)")
class S2MLPv2(_SpatialShiftMixer):
    """S2-MLPv2 token mixing: W₁ x → three branches (spatial_shift1, spatial_shift2, identity)
    fused by split attention (seed 002: a = Σ_k 1ᵀX_k, softmax over the K = 3 branches), then W₂
    (Yu et al. 2021, §3)."""

    def __init__(self, d_model: int, *, causal: bool = False) -> None:
        super().__init__(d_model, causal=causal)
        self.fc1 = nn.Linear(d_model, 3 * d_model)
        self.fc2 = nn.Linear(d_model, d_model)
        self.attn1 = nn.Linear(d_model, d_model, bias=False)
        self.attn2 = nn.Linear(d_model, 3 * d_model, bias=False)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        H, W = self.grid(x, layout)
        h = self._mask(self.fc1(x), padding_mask).unflatten(1, (H, W))
        x1, x2, x3 = h.chunk(3, dim=-1)
        branches = torch.stack([spatial_shift(x1, SHIFT1), spatial_shift(x2, SHIFT2), x3], dim=1).flatten(2, 3)
        branches = self._mask(branches.flatten(0, 1), None if padding_mask is None else
                              padding_mask.repeat_interleave(3, dim=0)).unflatten(0, (x.shape[0], 3))
        return self.fc2(split_attention(branches, self.attn1, self.attn2))
