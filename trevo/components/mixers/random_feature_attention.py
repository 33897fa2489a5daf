"""Random feature attention (RFA, with its gated causal recurrence) and LARA (importance-sampled random
features). The math lives in ``trevo.ops.random_feature_attention``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import FusedQKVHeads
from trevo.errors import IncompatibleError
from trevo.ops.linear_attention import normalised_linear_attention, normalised_linear_recurrence
from trevo.ops.random_feature_attention import fourier_features, lara_attention
from trevo.registry import Paper, register


@register("mixer", "rfa", paper=Paper("Random Feature Attention", "2103.02143", 2021),
          category="MHA/RightProduct", family="random_feature_attention", causal=True, bidirectional=True,
          recurrent=True, time="O(T·C·M + T·M·d/H) chunk, O(T²·M) quadratic, O(T·M·d/H) recurrent",
          memory="O(M·d/H) state per head", test_options={"n_features": 8, "chunk_size": 8})
class RandomFeatureAttention(FusedQKVHeads, TokenMixer):
    """RFA (eq. 5-7): unit-norm queries and keys, φ(x) = √(1/M)[sin(ωx), cos(ωx)] with M =
    ``n_features`` random frequencies per head, ω = ε/σ with ε ~ N(0, I) drawn once (a buffer) and the
    per-dimension σ learned (RFA-Gaussian with learned variance; initialised to 1), attention
    φ(q)ᵀ Σ φ(k) vᵀ / φ(q)·Σ φ(k). Causal: the gated variant
    S_t = g_t S_{t−1} + (1 − g_t) φ(k_t) v_tᵀ, g_t = σ(w_g·x_t + b_g) per head, on the linear-recurrence
    engine. The denominator, an estimate of a positive kernel sum, is floored at ``eps``.

    Forms (causal): ``chunk``, ``quadratic``, ``recurrent``; bidirectional sums over all real tokens
    (no gate), whatever the form."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, n_features: int = 32, eps: float = 1e-3,
                 chunk_size: int = 64, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.n_features, self.eps, self.chunk_size = n_features, eps, chunk_size
        self.init_heads(d_model, n_heads)
        self.register_buffer("noise", torch.randn(n_heads, n_features, self.head_dim))
        # σ = 1 at first: the kernel exp(−|q̂ − k̂|²/2) >= e^(−2) stays above the estimate's noise; with
        # σ = d^(−1/4) (softmax's temperature) the normaliser often fell below it (bpb 4.84 vs 3.24 after
        # 100 byte-LM steps at d_model 64)
        self.log_inv_sigma = nn.Parameter(torch.zeros(n_heads, 1, self.head_dim))
        if causal:
            self.gate = nn.Linear(d_model, n_heads)

    def _features(self, x: torch.Tensor):
        q, k, v = self.qkv_heads(x)
        omega = self.noise * torch.exp(self.log_inv_sigma)
        return fourier_features(F.normalize(q, dim=-1), omega), fourier_features(F.normalize(k, dim=-1), omega), v

    def _ratio(self, num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        return self.project_out(num / den.clamp_min(self.eps))

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        return self._ratio(*normalised_linear_attention(*self._features(x), padding_mask))

    def init_state(self, batch: int, device, dtype) -> State:
        m = 2 * self.n_features
        return {"S": torch.zeros(batch, self.n_heads, m, self.head_dim, device=device, dtype=dtype),
                "z": torch.zeros(batch, self.n_heads, m, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        qf, kf, v = self._features(x)
        a = self.gate(x).transpose(1, 2)  # [B, H, T]: g = σ(a), log g = logsigmoid(a), 1 − g = σ(−a)
        num, den, S, z = normalised_linear_recurrence(qf, kf * torch.sigmoid(-a)[..., None], v, state["S"], state["z"],
                                                      log_decay=F.logsigmoid(a), form=self.form_for(x.shape[1]),
                                                      chunk_size=self.chunk_size)
        return self._ratio(num, den), {"S": S, "z": z}


@register("mixer", "lara",
          paper=Paper("Linear Complexity Randomized Self-attention Mechanism", "2204.04667", 2022),
          category="MHA/RightProduct", family="random_feature_attention", causal=False, bidirectional=True,
          time="O(T·C·S·d/H + T·C²·S), C = n_landmarks, S = n_samples", memory="O(T·C·S) per head",
          test_options={"n_landmarks": 4, "n_samples": 2})
class LARA(FusedQKVHeads, TokenMixer):
    """LARA (§4, eq. 10-12): softmax attention estimated by self-normalised multiple importance
    sampling of random features, with ``n_landmarks`` Gaussian proposals N(μ_c, I) centred on
    segment landmarks and ``n_samples`` draws from each (the noise is drawn once, a buffer, so the
    estimator is deterministic in its input), combined with query-specific weights. Consistent:
    as n_samples grows it converges to softmax attention. Bidirectional only (the landmarks are
    segment means over the whole sequence)."""

    def __init__(self, d_model: int, *, causal: bool = False, n_heads: int = 4, n_landmarks: int = 8,
                 n_samples: int = 4) -> None:
        super().__init__(d_model, causal=causal)
        if n_landmarks < 1 or n_samples < 1:
            raise IncompatibleError(f"lara needs n_landmarks >= 1 and n_samples >= 1, got {n_landmarks}, {n_samples}")
        self.init_heads(d_model, n_heads)
        self.register_buffer("noise", torch.randn(n_heads, n_landmarks, n_samples, self.head_dim))

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q, k, v = self.qkv_heads(x)
        return self.project_out(lara_attention(q, k, v, self.noise, key_padding_mask=padding_mask))
