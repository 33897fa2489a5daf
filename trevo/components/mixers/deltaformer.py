"""DeltaFormer: softmax attention over values corrected by the delta rule in the softmax kernel's
feature space (``trevo.ops.deltaformer``)."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.kv_cache import empty_kv_cache
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.ops.deltaformer import deltaformer
from trevo.registry import Paper, register


@register("mixer", "deltaformer",
          paper=Paper("Understanding Transformer from the Perspective of Associative Memory", "2505.19488", 2025),
          category="MHA", family="deltaformer", causal=True, bidirectional=False, relative_positions=("rope",),
          time="O(T²·d)", memory="O(T·C) inference, O(T²) training (the correction's weights); cache of keys and "
                                     "corrected values O(T·d)",
          test_options={"chunk_size": 4})
class DeltaFormer(TokenMixer):
    """DeltaFormer: u_t = v_t − β_t Σ_{j<t} softmax_j(k_tᵀk_j/√d) u_j (the delta rule with the softmax
    kernel κ(k_t, k_j), as flash-linear-attention's layer computes it), o_t = Σ_{j<=t} softmax_j(q_tᵀk_j/√d) u_j,
    β_t = σ(W_β x_t) per head (fla leaves β unbounded; trevo keeps it in (0, 1) as DeltaNet does). Accepts
    RoPE as ``position`` (the paper's setting). Its generation state is the cache of keys and u."""

    forms = ("chunk", "quadratic", "recurrent")

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, chunk_size: int = 64,
                 position: nn.Module | None = None, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        self.n_heads, self.head_dim, self.chunk_size = n_heads, head_dim_of(d_model, n_heads), chunk_size
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d_model, d_model, bias=False)
                                                                for _ in range(4))
        self.b_proj = nn.Linear(d_model, n_heads, bias=True)
        self.position = position

    def init_state(self, batch: int, device, dtype) -> State:
        return empty_kv_cache((batch, self.n_heads, 0, self.head_dim), device, dtype)

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        H = self.n_heads
        q, k, v = (split_heads(p(x), H) for p in (self.q_proj, self.k_proj, self.v_proj))
        if self.position is not None and hasattr(self.position, "rotate"):
            offset = state["k"].shape[2]
            q, k = self.position.rotate(q, offset), self.position.rotate(k, offset)
        beta = torch.sigmoid(self.b_proj(x)).transpose(1, 2)
        o, u = deltaformer(q, k, v, beta, correction_query=k, cache_k=state["k"], cache_u=state["v"],
                           form=self.form_for(x.shape[1]), chunk_size=self.chunk_size)
        new = {"k": torch.cat([state["k"], k], dim=2), "v": torch.cat([state["v"], u], dim=2)}
        return self.out_proj(merge_heads(o)), new
