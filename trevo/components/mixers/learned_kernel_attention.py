"""Learned-kernel attention ("On Learning the Transformer Kernel", Chowdhury et al. 2021): linear attention
whose random-feature kernel has a learned Gaussian-mixture spectral distribution. The math lives in
``trevo.ops.learned_kernel_attention``."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import FusedQKVHeads
from trevo.errors import IncompatibleError
from trevo.ops.learned_kernel_attention import frequencies, prf_features, rks_features
from trevo.ops.linear_attention import normalised_linear_attention, normalised_linear_recurrence
from trevo.registry import Paper, register


@register("mixer", "learned_kernel_attention",
          paper=Paper("On Learning the Transformer Kernel", "2110.08323", 2021),
          category="MHA/RightProduct", family="learned_kernel_attention", causal=True, bidirectional=True,
          recurrent=True, time="O(T·C·M + T·M·d/H) chunk, O(T²·M) quadratic, O(T·M·d/H) recurrent",
          memory="O(M·d/H) state per head", test_options={"n_features": 8, "n_components": 2, "chunk_size": 8})
class LearnedKernelAttention(FusedQKVHeads, TokenMixer):
    """KL-Transformer (§3, GMM-PRF and GMM-RKS): linear attention φ(q)ᵀ Σ φ(k) vᵀ / φ(q)ᵀ Σ φ(k) with
    q, k scaled by d^(−1/4) and φ random features of M = ``n_features`` frequencies per head drawn as
    ω = μ_c + σ_c ⊙ ε from a learned mixture of ``n_components`` Gaussians (ε fixed, μ and σ learned,
    initialised at μ = 0, σ = 1: the softmax kernel for ``feature_map="prf"``, the Gaussian kernel
    for "rks"). PRF features are positive, so the normaliser is a positive sum; RKS normalisers are
    floored at ``eps``. Forms (causal): ``chunk``, ``quadratic``, ``recurrent``."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, n_features: int = 32, n_components: int = 4,
                 feature_map: str = "prf", eps: float = 1e-3, chunk_size: int = 64, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        if feature_map not in ("prf", "rks"):
            raise IncompatibleError(f"learned_kernel_attention: feature_map must be 'prf' or 'rks', "
                                    f"got {feature_map!r}")
        if n_components < 1 or n_features % n_components:
            raise IncompatibleError(f"learned_kernel_attention: n_components={n_components} must divide "
                                    f"n_features={n_features}")
        self.feature_map, self.eps, self.chunk_size = feature_map, eps, chunk_size
        self.n_state = n_features if feature_map == "prf" else 2 * n_features
        self.init_heads(d_model, n_heads)
        self.mu = nn.Parameter(torch.zeros(n_heads, n_components, self.head_dim))
        self.log_sigma = nn.Parameter(torch.zeros(n_heads, n_components, self.head_dim))
        self.register_buffer("noise", torch.randn(n_heads, n_components, n_features // n_components, self.head_dim))

    def _features(self, x: torch.Tensor):
        q, k, v = self.qkv_heads(x)
        q, k = q * self.head_dim ** -0.25, k * self.head_dim ** -0.25
        omega = frequencies(self.mu, self.log_sigma, self.noise)
        if self.feature_map == "prf":
            return prf_features(q, omega, stabilise=True), prf_features(k, omega), v
        return rks_features(q, omega), rks_features(k, omega), v

    def _ratio(self, num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        return self.project_out(num / den.clamp_min(self.eps))

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        return self._ratio(*normalised_linear_attention(*self._features(x), padding_mask))

    def init_state(self, batch: int, device, dtype) -> State:
        return {"S": torch.zeros(batch, self.n_heads, self.n_state, self.head_dim, device=device, dtype=dtype),
                "z": torch.zeros(batch, self.n_heads, self.n_state, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        qf, kf, v = self._features(x)
        num, den, S, z = normalised_linear_recurrence(qf, kf, v, state["S"], state["z"],
                                                      form=self.form_for(x.shape[1]), chunk_size=self.chunk_size)
        return self._ratio(num, den), {"S": S, "z": z}
