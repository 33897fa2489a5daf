"""MoBA: mixture of block attention, each query routed by a top-k gate to a few key blocks."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.errors import IncompatibleError
from trevo.ops.moba import moba_attention
from trevo.registry import Paper, register


@register("mixer", "moba", paper=Paper("MoBA: Mixture of Block Attention for Long-Context LLMs", "2502.13189", 2025),
          category="MHA/SparseOrLowRank", family="moba", causal=True, bidirectional=False, relative_positions=("rope",),
          time="O(T·k·b·d + T²·d/b): k blocks of b keys per query, the gate against every past block",
          memory="O(T·k·b) sparse, O(T²) quadratic; KV cache O(T·d)",
          test_options={"block_size": 4, "topk": 2})
class MoBA(TokenMixer):
    """MoBA (Lu et al. 2025): the keys in blocks of ``block_size``; query t scores each past block b
    by s_tb = q_t · mean(K_b) and attends in one softmax to its ``topk − 1`` highest-scoring past blocks
    and, causally, to its own block. Selection per head; it is discrete, so gradients flow through
    the attention only. Forms: ``sparse`` (each selected key block with the queries that chose it) and
    ``quadratic`` (the dense masked reference). Generation keeps the KV cache; block means are recomputed
    from it. Accepts RoPE."""

    forms = ("sparse", "quadratic")

    def __init__(self, d_model: int, *, causal: bool = True, n_heads: int = 4, head_dim: int | None = None,
                 block_size: int = 64, topk: int = 3, position: nn.Module | None = None, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        if block_size < 1 or topk < 1:
            raise IncompatibleError(f"moba needs block_size >= 1 and topk >= 1 (the own block counts), got "
                                    f"block_size={block_size}, topk={topk}")
        self.n_heads, self.head_dim = n_heads, head_dim_of(d_model, n_heads, head_dim)
        self.block_size, self.topk, self.position = block_size, topk, position
        width = n_heads * self.head_dim
        self.qkv_proj = nn.Linear(d_model, 3 * width, bias=False)
        self.out_proj = nn.Linear(width, d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> State:
        kv = torch.zeros(batch, self.n_heads, 0, self.head_dim, device=device, dtype=dtype)
        return {"k": kv, "v": kv.clone()}

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        offset = state["k"].shape[2]
        q, k, v = (split_heads(t, self.n_heads) for t in self.qkv_proj(x).chunk(3, dim=-1))
        if self.position is not None and hasattr(self.position, "rotate"):
            q, k = self.position.rotate(q, offset), self.position.rotate(k, offset)
        k, v = torch.cat([state["k"], k], dim=2), torch.cat([state["v"], v], dim=2)
        o = moba_attention(q, k, v, block_size=self.block_size, topk=self.topk, form=self.form_for(x.shape[1]))
        return self.out_proj(merge_heads(o)), {"k": k, "v": v}
