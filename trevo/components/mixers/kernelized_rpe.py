"""Kernelized attention with relative positional encoding (Luo et al., arXiv:2106.12566): Performer's random
features with a learned relative bias, computed by FFT. The math lives in ``trevo.ops.kernelized_rpe``."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import TokenMixer
from trevo.components.multihead import KVCacheAttention
from trevo.errors import TrevoError
from trevo.ops.kernelized_rpe import kernelized_rpe_fft, kernelized_rpe_quadratic
from trevo.ops.performer import orthogonal_gaussian, positive_features
from trevo.registry import Paper, register


@register("mixer", "kernelized_rpe_attention",
          paper=Paper("Stable, Fast and Accurate: Kernelized Attention with Relative Positional Encoding",
                      "2106.12566", 2021),
          category="Pe", family="kernelized_rpe", causal=True, bidirectional=True, fixed_length=True,
          relative_positions=("translation_equivariant",),
          time="O(T·log T·m·d) fft, O(T²·m) quadratic", memory="O(T·m·d/H) per head; KV cache O(T·d)",
          test_options={"n_features": 8, "fft_chunk_size": 4})
class KernelizedRPEAttention(KVCacheAttention, TokenMixer):
    """Kernelized attention with RPE (§3, eq. 6-8): oᵢ = Σⱼ c_{i−j} φ(qᵢ)ᵀφ(kⱼ) vⱼ / Σⱼ c_{i−j} φ(qᵢ)ᵀφ(kⱼ)
    with Performer's positive random features φ (a fixed draw of ``n_features`` orthogonal directions
    shared by the heads) and c = exp(b), b a learned bias per head and lag |i − j| < ``max_len``
    (zero at the start: plain kernelized attention). The ``fft`` form convolves φ(k) ⊗ [v, 1] with c along
    time, O(T log T); ``quadratic`` builds the weights. Causal generation keeps the KV cache: c_{i−j}
    is not a decay, so no fixed-size state summarises the past. ``position``: a relative position with
    ``lag_bias`` (``translation_equivariant``, Horn et al. 2021) gives b instead of the free table, at any
    length."""

    forms = ("fft", "quadratic")

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, n_features: int = 64, max_len: int = 1024,
                 fft_chunk_size: int = 64, position: nn.Module | None = None, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.max_len, self.fft_chunk_size = max_len, fft_chunk_size
        self.init_heads(d_model, n_heads)
        self.register_buffer("projection", orthogonal_gaussian(n_features, self.head_dim))
        self.position = position
        if position is not None:
            position.attach(n_heads=n_heads, head_dim=self.head_dim, causal=causal)
        else:
            # lags −(max_len − 1) … max_len − 1
            self.position_bias = nn.Parameter(torch.zeros(n_heads, 2 * max_len - 1))

    def lag_bias(self, n_keys: int) -> tuple[torch.Tensor, torch.Tensor]:
        """b at lags 0, 1, … and −1, −2, … (``[H, ≥ n_keys]``, ``[H, ≥ n_keys − 1]``)."""
        if self.position is not None:
            return self.position.lag_bias(n_keys)
        if n_keys > self.max_len:
            raise TrevoError(f"kernelized_rpe_attention learns a relative bias for lags below {self.max_len} "
                             f"(model.max_len) but got {n_keys} positions; raise model.max_len")
        zero = self.max_len - 1
        return self.position_bias[:, zero:], self.position_bias[:, :zero].flip(-1)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               padding_mask: torch.Tensor | None) -> torch.Tensor:
        n_keys = k.shape[2]
        b_causal, b_back = self.lag_bias(n_keys)
        scale = self.head_dim ** -0.25  # φ(q)ᵀφ(k) ≈ exp(qᵀk/√d)
        qf = positive_features(q * scale, self.projection, stabilise=True)
        kf = positive_features(k * scale, self.projection, stabilise=False)
        if padding_mask is not None:  # padded keys add nothing to the sums
            kf = kf * padding_mask[:, None, :, None].to(kf.dtype)
        c_causal, c_back = b_causal.exp(), b_back.exp()
        if q.shape[2] == n_keys and self.form_for(n_keys) == "fft":
            o = kernelized_rpe_fft(qf, kf, v, c_causal, c_back, causal=self.causal, block=self.fft_chunk_size)
        else:
            o = kernelized_rpe_quadratic(qf, kf, v, c_causal, c_back, causal=self.causal)
        return self.project_out(o)
