"""FourierFormer (Nguyen et al., "FourierFormer: Transformer Meets Generalized Fourier Integral Theorem",
arXiv:2206.00206): attention weights from the generalised Fourier integral estimator instead of the
softmax of dot products. The math lives in ``trevo.ops.fourierformer``."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import TokenMixer
from trevo.components.multihead import KVCacheAttention
from trevo.errors import IncompatibleError
from trevo.ops.fourierformer import fourier_attention
from trevo.registry import Paper, register


@register("mixer", "fourierformer",
          paper=Paper("FourierFormer: Transformer Meets Generalized Fourier Integral Theorem", "2206.00206", 2022),
          category="MHA/RightProduct", family="fourierformer", causal=True, bidirectional=True,
          time="O(T²·d) (every per-dimension difference)", memory="O(C·T·d/H) per chunk; KV cache O(T·d)",
          test_options={"chunk_size": 4})
class FourierFormer(KVCacheAttention, TokenMixer):
    """Fourier integral attention (eq. 9-10): o_i = Σ_j K(q_i − k_j) v_j / Σ_j K(q_i − k_j) with
    K(Δ) = Π_d φ(sin(R Δ_d)/Δ_d), φ(y) = y^p (p = ``power``, even, so the weights are non-negative),
    the radius R learned per head (initialised to 1). A Nadaraya-Watson estimator of the values with
    a Fourier-integral density estimate, not a dot product: O(T²·d). Causal generation keeps the KV
    cache."""

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, power: int = 2, chunk_size: int = 64) -> None:
        super().__init__(d_model, causal=causal)
        if power < 2 or power % 2:
            raise IncompatibleError(f"fourierformer: power (φ(y) = y^p) must be an even integer >= 2, got {power}")
        self.power, self.chunk_size = power, chunk_size
        self.init_heads(d_model, n_heads)
        self.log_radius = nn.Parameter(torch.zeros(n_heads))

    def attend(self, q, k, v, padding_mask):
        o = fourier_attention(q, k, v, torch.exp(self.log_radius), power=self.power, causal=self.causal,
                              key_padding_mask=padding_mask, chunk_size=self.chunk_size)
        return self.project_out(o)
