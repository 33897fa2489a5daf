"""Product-key memory as a channel mixer (Lample et al. 2019, "Large Memory Layers with Product Keys",
arXiv:1907.05242): a key-value memory of n_keys² slots read by the k best keys, found exactly without
scoring every slot."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import ChannelMixer
from trevo.components.multihead import head_dim_of
from trevo.errors import IncompatibleError
from trevo.registry import Paper, register


def product_key_topk(scores_1: torch.Tensor, scores_2: torch.Tensor, topk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``topk`` best of the n² sums s1[a] + s2[b] over the last dimension, as (scores, a·n + b).

    The product-key search (§3.2): the best sum's a is among the top-k of s1 and its b among the top-k
    of s2, so the k × k candidate sums hold the exact top-k: O(n + k²) work instead of O(n²)."""
    n = scores_1.shape[-1]
    best_1, index_1 = scores_1.topk(topk, dim=-1)
    best_2, index_2 = scores_2.topk(topk, dim=-1)
    candidates = (best_1[..., :, None] + best_2[..., None, :]).flatten(-2)  # [..., k·k]
    scores, flat = candidates.topk(topk, dim=-1)
    slots = index_1.gather(-1, flat // topk) * n + index_2.gather(-1, flat % topk)
    return scores, slots


@register("channel", "product_key_memory", category="FFN", family="product_key_memory",
          paper=Paper("Large Memory Layers with Product Keys", "1907.05242", 2019), time="O(T·(d·h + n·h + k²))")
class ProductKeyMemory(ChannelMixer):
    """Product-key memory: per head, a query q(x) of width ``head_dim`` split in halves q1, q2; sub-key
    sets C1, C2 of ``n_keys`` keys each define n_keys² product keys (c1_a, c2_b) with score
    q1·c1_a + q2·c2_b; the ``topk`` best slots are found exactly (``product_key_topk``) and read as
    Σ softmax(scores)·V[slot]; the heads' reads are summed (Lample et al. 2019, §3, eq. 1-3).

    The paper normalises the query with BatchNorm; trevo uses a LayerNorm per head (batch statistics
    would let one token's output depend on the others'). The values are the columns of the Linear
    ``value`` (n_keys² → d_model), so residual placements find the output projection by name."""

    def __init__(self, d_model: int, n_heads: int = 4, head_dim: int | None = None, n_keys: int = 32,
                 topk: int = 8) -> None:
        super().__init__(d_model)
        head_dim = head_dim_of(d_model, n_heads, head_dim)
        if head_dim % 2:
            raise IncompatibleError(f"product_key_memory splits each query in two halves, so head_dim must be even; "
                                    f"got {head_dim}")
        if not 1 <= topk <= n_keys:
            raise IncompatibleError(f"product_key_memory reads topk slots from the top-k of n_keys sub-keys: need "
                                    f"1 <= topk <= n_keys, got topk={topk}, n_keys={n_keys}")
        self.n_heads, self.head_dim, self.n_keys, self.topk = n_heads, head_dim, n_keys, topk
        self.query = nn.Linear(d_model, n_heads * head_dim, bias=False)
        self.query_norm = nn.LayerNorm(head_dim)
        # sub-keys C1, C2 per head: [H, 2, n_keys, head_dim / 2], uniform as in the paper's reference code
        bound = (head_dim // 2) ** -0.5
        self.sub_keys = nn.Parameter(torch.empty(n_heads, 2, n_keys, head_dim // 2).uniform_(-bound, bound))
        self.value = nn.Linear(n_keys * n_keys, d_model, bias=False)

    def slot_scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each head's sub-key scores ``[..., H, 2, n_keys]`` for the tokens ``x`` ``[..., d_model]``."""
        q = self.query_norm(self.query(x).unflatten(-1, (self.n_heads, self.head_dim)))
        halves = q.unflatten(-1, (2, self.head_dim // 2))  # [..., H, 2, D/2]
        return torch.einsum("...hsd,hsnd->...hsn", halves, self.sub_keys).unbind(-2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores_1, scores_2 = self.slot_scores(x)
        scores, slots = product_key_topk(scores_1, scores_2, self.topk)  # [..., H, k]
        weights = F.softmax(scores, dim=-1)
        values = F.embedding(slots.flatten(-2), self.value.weight.t())  # [..., H·k, d_model]
        return (weights.flatten(-2)[..., None] * values).sum(-2)
