"""Skyformer: Gaussian-kernel attention approximated by the Nyström method (Chen et al. 2021).
The math lives in ``trevo.ops.skyformer``."""

from __future__ import annotations

import torch

from trevo.components.base import TokenMixer
from trevo.components.multihead import FusedQKVHeads
from trevo.errors import IncompatibleError
from trevo.ops.skyformer import skyformer_attention
from trevo.registry import Paper, register


@register("mixer", "skyformer",
          paper=Paper("Skyformer: Remodel Self-Attention with Gaussian Kernel and Nyström Method", "2111.00035", 2021),
          category="MHA/MatrixMethod", family="skyformer", causal=False, bidirectional=True,
          time="O(T·m·d + m³), m = n_landmarks", memory="O(T·m)", test_options={"n_landmarks": 8})
class Skyformer(FusedQKVHeads, TokenMixer):
    """Skyformer (§3-4): the kernelized attention κ(Q, K) V with the Gaussian kernel
    κ(q, k) = exp(−|q − k|²/(2√d)) in place of softmax, approximated by Nyström on the PSD matrix
    κ([Q; K], [Q; K]): κ(Q, Z)(κ(Z, Z) + γI)⁻¹ κ(Z, K) V with ``n_landmarks`` landmarks Z taken
    evenly from the real queries and keys (the paper samples them at random) and ridge γ = ``ridge``.
    Exact as the landmarks cover every query and key and γ → 0; bidirectional only."""

    def __init__(self, d_model: int, *, causal: bool = False, n_heads: int = 4, n_landmarks: int = 32,
                 ridge: float = 1e-3) -> None:
        super().__init__(d_model, causal=causal)
        if n_landmarks < 2 or ridge < 0:
            raise IncompatibleError(f"skyformer needs n_landmarks >= 2 and ridge >= 0, got {n_landmarks}, {ridge}")
        self.n_landmarks, self.ridge = n_landmarks, ridge
        self.init_heads(d_model, n_heads)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q, k, v = self.qkv_heads(x)
        o = skyformer_attention(q, k, v, n_landmarks=self.n_landmarks, ridge=self.ridge, key_padding_mask=padding_mask)
        return self.project_out(o)
