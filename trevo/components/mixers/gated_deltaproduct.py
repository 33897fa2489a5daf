"""Gated DeltaProduct: n delta-rule (generalized Householder) steps per token (``trevo.ops.delta_rule``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import State
from trevo.components.mixers.deltanet import DeltaRuleMixer, MambaDecay
from trevo.components.multihead import merge_heads, split_heads
from trevo.errors import IncompatibleError
from trevo.ops.delta_rule import delta_product
from trevo.registry import Paper, register


@register("mixer", "gated_deltaproduct",
          paper=Paper("DeltaProduct: Improving State-Tracking in Linear RNNs via Householder Products",
                      "2502.10297", 2025),
          category="Rnn", family="gated_deltaproduct", causal=True, bidirectional=False, recurrent=True,
          time="O(n·T·C·d + n·T·d²/H) chunk, O(n·T·d²/H) recurrent", memory="O(d²/H) state",
          test_options={"chunk_size": 5, "n_householder": 2})
class GatedDeltaProduct(DeltaRuleMixer):
    """Gated DeltaProduct (with Gated DeltaNet's gate): per token, n = ``n_householder`` keys,
    values and β's, S_t = α_t Π_{j=n..1} (I − β_tj k_tj k_tjᵀ) S_{t−1} + Σ_j (Π_{l>j} (I − β_tl k_tl k_tlᵀ))
    β_tj k_tj v_tjᵀ, o_t = S_tᵀ q_t / √d_k. β ∈ (0, 2) by default (``negative_eigenvalues``, the paper's
    setting for state tracking): a product of n reflections can express any rotation in n dimensions.
    Short convolutions and SiLU on q and on the n keys and values, L2-normalised keys, output gate
    RMSNorm(o) ⊙ SiLU(W_g x). ``chunk_size`` counts the n·T interleaved steps."""

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, n_householder: int = 2,
                 conv_size: int = 4, chunk_size: int | None = None, negative_eigenvalues: bool = True,
                 form: str = "auto") -> None:
        if n_householder < 1:
            raise IncompatibleError(f"n_householder must be >= 1, got {n_householder}")
        super().__init__(d_model, causal=causal, n_heads=n_heads, conv_size=conv_size, chunk_size=chunk_size,
                         negative_eigenvalues=negative_eigenvalues, form=form, writes_per_token=n_householder)
        self.n_householder = n_householder
        self.decay = MambaDecay(d_model, n_heads)
        self.g_proj = nn.Linear(d_model, d_model, bias=False)

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        new: State = {}
        B, T, _ = x.shape
        H, n = self.n_heads, self.n_householder
        q, new["conv_q"] = self.q_conv(self.q_proj(x), state["conv_q"])
        k, new["conv_k"] = self.k_conv(self.k_proj(x), state["conv_k"])
        v, new["conv_v"] = self.v_conv(self.v_proj(x), state["conv_v"])
        q = F.normalize(split_heads(F.silu(q), H), dim=-1)

        def steps(y: torch.Tensor) -> torch.Tensor:  # (B, T, n·d) -> [B, H, T, n, D]
            return F.silu(y).unflatten(-1, (n, H, -1)).permute(0, 3, 1, 2, 4)

        k, v = F.normalize(steps(k), dim=-1), steps(v)
        beta = self.beta_scale * torch.sigmoid(self.b_proj(x)).unflatten(-1, (n, H)).permute(0, 3, 1, 2)
        o, new["S"] = delta_product(q, k, v, beta, log_decay=self.decay(x), initial_state=state["S"],
                                    scale=self.head_dim ** -0.5, form=self.form_for(T),
                                    chunk_size=self.chunk_size_for(T))
        return self.out_proj(merge_heads(self.o_norm(o)) * F.silu(self.g_proj(x))), new
