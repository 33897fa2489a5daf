"""Simple local attention baselines (Xiong et al. 2021): block-local attention over disjoint blocks.

The paper's other local baseline, the overlapping sliding window, is the same thing as Longformer's
local attention and is registered once, as ``sliding_window_attention`` (``sparse_attention.py``)."""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.base import State, TokenMixer
from trevo.components.kv_cache import empty_kv_cache
from trevo.components.multihead import head_dim_of, merge_heads, split_heads
from trevo.errors import IncompatibleError
from trevo.ops.local_attention import block_local_attention
from trevo.registry import Paper, register

LOCAL_PAPER = Paper("Simple Local Attentions Remain Competitive for Long-Context Tasks", "2112.07210", 2021)


class BlockLocalMixer(TokenMixer):
    """Multi-head softmax attention inside disjoint blocks of ``block_size`` positions. Generation keeps the
    keys and values of the current block only: fewer than ``block_size`` tokens, a constant-size state."""

    def __init__(self, d_model: int, *, causal: bool, n_heads: int, block_size: int) -> None:
        super().__init__(d_model, causal=causal)
        if block_size < 1:
            raise IncompatibleError(f"{type(self).__name__} needs block_size >= 1, got {block_size}")
        self.n_heads, self.head_dim, self.block_size = n_heads, head_dim_of(d_model, n_heads), block_size
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def _heads(self, x: torch.Tensor):
        return (split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        q, k, v = self._heads(x)
        return self.out_proj(merge_heads(block_local_attention(q, k, v, self.block_size, causal=False,
                                                               key_padding_mask=padding_mask)))

    def init_state(self, batch: int, device, dtype) -> State:
        return empty_kv_cache((batch, self.n_heads, 0, self.head_dim), device, dtype)

    def causal_forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        q, k, v = self._heads(x)
        held = state["k"].shape[2]  # the tokens of the current block seen so far: the cache starts a block
        k, v = torch.cat([state["k"], k], dim=2), torch.cat([state["v"], v], dim=2)
        q = torch.cat([q.new_zeros(q.shape[0], q.shape[1], held, q.shape[3]), q], dim=2)  # outputs dropped
        y = block_local_attention(q, k, v, self.block_size, causal=True)[:, :, held:]
        keep = k.shape[2] % self.block_size
        return self.out_proj(merge_heads(y)), {"k": k[:, :, k.shape[2] - keep:], "v": v[:, :, v.shape[2] - keep:]}


@register("mixer", "block_local_attention", paper=LOCAL_PAPER, category="MHA/LocalGlobal", family="local_attention",
          causal=True, bidirectional=True, recurrent=True, time="O(T·w·d)", memory="O(T·w); state < w keys",
          summary="Block-local attention (Xiong et al. 2021): softmax attention inside disjoint blocks of w tokens; "
                  "the paper's sliding-window baseline is sliding_window_attention",
          test_options={"window": 4})
class BlockLocalAttention(BlockLocalMixer):
    """Block-local attention, the "simple local attention" of Xiong et al. 2021 (section 3): the sequence
    is cut into disjoint blocks of ``window`` tokens and query i attends the keys j of its own block,
    ⌊j/w⌋ = ⌊i/w⌋ (and j <= i when causal); softmax(q kᵀ/√d) v inside each block."""

    def __init__(self, d_model: int, *, causal: bool, n_heads: int = 4, window: int = 128) -> None:
        super().__init__(d_model, causal=causal, n_heads=n_heads, block_size=window)
