"""MobileViT-v2's separable self-attention; the math is in ``trevo.ops.separable_attention``."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.errors import IncompatibleError
from trevo.ops.separable_attention import causal_separable_context, separable_context
from trevo.registry import Paper, register


@register("mixer", "separable_attention",
          paper=Paper("Separable Self-attention for Mobile Vision Transformers", "2206.02680", 2022),
          category="MHA/SparseOrLowRank", family="separable_attention", causal=True, bidirectional=True,
          recurrent=True, time="O(T·d)", memory="O(d) context; state O(d)", test_options={"chunk_size": 4})
class SeparableAttention(TokenMixer):
    """Separable self-attention (Mehta & Rastegari 2022, eq. 2-4): context scores c = softmax(X W_I)
    over the tokens from a single latent direction W_I ∈ R^{d×1}, one context vector c_v = Σ c_i x_i W_K,
    and y_i = W_O(ReLU(x_i W_V) ⊙ c_v). The paper applies it to the patches of MobileViT-v2; here it mixes
    any sequence. Causally (trevo's exact prefix form) c_v at t is the softmax-weighted mean of the
    keys up to t, with a constant state; forms ``chunk`` and ``recurrent``."""

    forms = ("chunk", "recurrent")

    def __init__(self, d_model: int, *, causal: bool, chunk_size: int = 64, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        if chunk_size < 1:
            raise IncompatibleError(f"separable_attention needs chunk_size >= 1, got {chunk_size}")
        self.chunk_size = chunk_size
        self.score = nn.Linear(d_model, 1)  # W_I: the latent token's scores
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        context = separable_context(self.score(x)[..., 0], self.key(x), padding_mask)
        return self.out_proj(torch.relu(self.value(x)) * context[:, None])

    def init_state(self, batch: int, device, dtype) -> State:
        return {"m": torch.full((batch,), float("-inf"), device=device, dtype=dtype),
                "z": torch.zeros(batch, device=device, dtype=dtype),
                "S": torch.zeros(batch, self.d_model, device=device, dtype=dtype)}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        chunk = 1 if self.form_for(x.shape[1]) == "recurrent" else self.chunk_size
        context, (m, z, S) = causal_separable_context(self.score(x)[..., 0], self.key(x), state["m"], state["z"],
                                                      state["S"], chunk)
        return self.out_proj(torch.relu(self.value(x)) * context), {"m": m, "z": z, "S": S}
