"""Combiner-Fixed: direct attention in the own region, local expectations of the others (Ren et al. 2021)."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.errors import IncompatibleError
from trevo.ops.combiner import combiner_attention
from trevo.registry import Paper, register


@register("mixer", "combiner",
          paper=Paper("Combiner: Full Attention Transformer with Sparse Computation Cost", "2107.05768", 2021),
          category="MHA/Others", family="combiner", causal=True, bidirectional=True,
          time="O(T·(c + T/c)·d)", memory="O(T·(c + T/c)); query and KV cache O(T·d)", test_options={"block_size": 3})
class Combiner(TokenMixer):
    """Combiner-Fixed (Ren et al. 2021, sections 3-4): the sequence is cut into regions of ``block_size``
    tokens; query i attends the keys of its own region directly (j <= i causally) and each other region
    (each earlier one causally) through one key, the max-pooled keys of the region, whose value is the
    region's local expectation Σ_j softmax(q_r·k_j) v_j under its max-pooled query; one softmax over
    both. Full attention in one layer (every position is reached) at sub-quadratic cost. Generation
    keeps the queries as well as the keys and values: a region's summary needs its queries."""

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, block_size: int = 32) -> None:
        super().__init__(d_model, causal=causal)
        if block_size < 1:
            raise IncompatibleError(f"combiner needs block_size >= 1, got {block_size}")
        self.n_heads, self.head_dim, self.block_size = n_heads, head_dim_of(d_model, n_heads), block_size
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def _heads(self, x: torch.Tensor):
        return (split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q, k, v = self._heads(x)
        return self.out_proj(merge_heads(combiner_attention(q, k, v, self.block_size, causal=False,
                                                            key_padding_mask=padding_mask)))

    def init_state(self, batch: int, device, dtype) -> State:
        empty = torch.zeros(batch, self.n_heads, 0, self.head_dim, device=device, dtype=dtype)
        return {"q": empty, "k": empty.clone(), "v": empty.clone()}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        held = state["k"].shape[2]
        q, k, v = (torch.cat([state[n], t], dim=2) for n, t in zip("qkv", self._heads(x), strict=True))
        y = combiner_attention(q, k, v, self.block_size, causal=True)[:, :, held:]
        return self.out_proj(merge_heads(y)), {"q": q, "k": k, "v": v}
