"""Differential attention (DIFF Transformer): the difference of two softmax attention maps."""

from __future__ import annotations

import math

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.components.norms import RMSNorm
from trevo.errors import IncompatibleError
from trevo.ops.attention import chunked_softmax_attention, sdpa_attention
from trevo.registry import Paper, register


def lambda_init(layer_idx: int) -> float:
    """λ_init = 0.8 − 0.6·exp(−0.3·(l − 1)) for the l-th layer (l = layer_idx + 1)."""
    return 0.8 - 0.6 * math.exp(-0.3 * layer_idx)


@register("mixer", "differential_attention", paper=Paper("Differential Transformer", "2410.05258", 2024),
          category="MHA", family="differential_attention", causal=True, bidirectional=True,
          relative_positions=("rope",), time="O(T²·d) (two softmax maps)",
          memory="O(T²) sdpa, O(T·C) chunk; KV cache O(T·d)", test_options={"chunk_size": 8})
class DifferentialAttention(TokenMixer):
    """DiffAttn (Ye et al. 2024): [Q₁; Q₂] = XW_Q, [K₁; K₂] = XW_K, V = XW_V,
    DiffAttn(X) = (softmax(Q₁K₁ᵀ/√d) − λ softmax(Q₂K₂ᵀ/√d)) V per head, with the re-parameterised
    λ = exp(λ_q1·λ_k1) − exp(λ_q2·λ_k2) + λ_init; each head's output is normalised (GroupNorm as a
    per-head RMSNorm), scaled by 1 − λ_init, concatenated and projected by W_O.

    A head has two query/key sub-heads of ``head_dim`` and a value of 2·``head_dim``
    (``head_dim`` = d_model / (2·n_heads)): ``n_heads=2`` matches softmax attention's 4 heads in width.
    ``layer_idx`` (context) sets λ_init. Forms: ``sdpa`` and ``chunk`` for both maps. Accepts RoPE."""

    forms = ("sdpa", "chunk")

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 2, head_dim: int | None = None,
                 chunk_size: int = 128, layer_idx: int = 0, position: nn.Module | None = None,
                 form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.n_heads = n_heads
        if head_dim is None and n_heads >= 1 and d_model % (2 * n_heads):
            raise IncompatibleError(f"differential_attention: d_model={d_model} is not divisible by 2·n_heads="
                                    f"{2 * n_heads} (two query/key sub-heads per head); choose n_heads or head_dim")
        self.head_dim = head_dim_of(d_model, 2 * n_heads, head_dim)
        self.chunk_size, self.position = chunk_size, position
        width = 2 * n_heads * self.head_dim
        self.q_proj = nn.Linear(d_model, width, bias=False)
        self.k_proj = nn.Linear(d_model, width, bias=False)
        self.v_proj = nn.Linear(d_model, width, bias=False)
        self.out_proj = nn.Linear(width, d_model, bias=False)
        self.lambda_init = lambda_init(layer_idx)
        self.lambda_q1, self.lambda_k1, self.lambda_q2, self.lambda_k2 = (
            nn.Parameter(torch.randn(self.head_dim) * 0.1) for _ in range(4))
        self.head_norm = RMSNorm(2 * self.head_dim, eps=1e-5)

    def lam(self) -> torch.Tensor:
        """λ = exp(λ_q1·λ_k1) − exp(λ_q2·λ_k2) + λ_init."""
        return (torch.exp(self.lambda_q1 @ self.lambda_k1) - torch.exp(self.lambda_q2 @ self.lambda_k2)
                + self.lambda_init)

    def _project(self, x: torch.Tensor, offset: int):
        q, k = split_heads(self.q_proj(x), 2 * self.n_heads), split_heads(self.k_proj(x), 2 * self.n_heads)
        if self.position is not None and hasattr(self.position, "rotate"):
            q, k = self.position.rotate(q, offset), self.position.rotate(k, offset)
        return q, k, split_heads(self.v_proj(x), self.n_heads)

    def _attend(self, q, k, v, padding_mask):
        """q, k ``[B, 2h, Tq|Tk, d]`` (sub-heads 2i, 2i + 1 of head i), v ``[B, h, Tk, 2d]``."""
        v2 = v.repeat_interleave(2, dim=1)  # both maps of a head read its value
        if self.form_for(k.shape[2]) == "chunk":
            a = chunked_softmax_attention(q, k, v2, causal=self.causal, key_padding_mask=padding_mask,
                                          chunk_size=self.chunk_size)
        else:
            a = sdpa_attention(q, k, v2, causal=self.causal, key_padding_mask=padding_mask)
        a = a.unflatten(1, (self.n_heads, 2))
        o = self.head_norm(a[:, :, 0] - self.lam() * a[:, :, 1]) * (1 - self.lambda_init)
        return self.out_proj(merge_heads(o))

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        return self._attend(*self._project(x, 0), padding_mask)

    def init_state(self, batch: int, device, dtype) -> State:
        k = torch.zeros(batch, 2 * self.n_heads, 0, self.head_dim, device=device, dtype=dtype)
        return {"k": k, "v": torch.zeros(batch, self.n_heads, 0, 2 * self.head_dim, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q, k, v = self._project(x, state["k"].shape[2])
        k, v = torch.cat([state["k"], k], dim=2), torch.cat([state["v"], v], dim=2)
        return self._attend(q, k, v, None), {"k": k, "v": v}
