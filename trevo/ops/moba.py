"""MoBA, mixture of block attention (Lu et al., "MoBA: Mixture of Block Attention for Long-Context
LLMs", arXiv:2502.13189).

The keys are cut into blocks of ``block_size``; a query scores every block that ended before its own
block by the gate s_b = q · mean(K_b) and attends, in one softmax, to the keys of its ``topk − 1``
best blocks and causally to its own block (the current block is always one of the ``topk``). The
selection is discrete (no gradient), as in the paper; gradients reach q, k, v through the attention.

Layout as in ``trevo.ops.attention``: q ``[B, H, Tq, D]`` the last Tq of Tk positions, k, v ``[B, H, Tk, D]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.ops.attention import selected_block_attention


@torch.no_grad()
def moba_select(q: torch.Tensor, k: torch.Tensor, *, block_size: int, topk: int,
                query_chunk: int = 1024) -> torch.Tensor:
    """``[B, H, Tq, topk]`` block numbers per query: its own block first, then its topk − 1 past
    blocks of highest gate score (−1 where fewer past blocks exist)."""
    B, H, tq, D = q.shape
    tk = k.shape[2]
    n_full = tk // block_size
    means = k[:, :, :n_full * block_size].unflatten(2, (n_full, block_size)).mean(dim=3)  # [B, H, Nf, D]
    qpos = torch.arange(tk - tq, tk, device=q.device)
    own = qpos // block_size
    picks = []
    for start in range(0, tq, query_chunk):
        own_c = own[start:start + query_chunk]
        gate = q[:, :, start:start + query_chunk] @ means.transpose(-1, -2)  # [B, H, c, Nf]
        past = torch.arange(n_full, device=q.device)[None, :] < own_c[:, None]
        gate = gate.masked_fill(~past, float("-inf"))
        n_pick = min(topk - 1, n_full)
        if n_pick > 0:
            score, idx = gate.topk(n_pick, dim=-1)
            idx = torch.where(torch.isinf(score), -1, idx)
        else:
            idx = gate.new_zeros(gate.shape[:-1] + (0,), dtype=torch.long)
        idx = F.pad(idx, (0, topk - 1 - n_pick), value=-1)
        picks.append(torch.cat([own_c.expand(B, H, -1)[..., None], idx], dim=-1))
    return torch.cat(picks, dim=2)


def moba_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, block_size: int, topk: int,
                   form: str = "sparse") -> torch.Tensor:
    """MoBA: causal attention over each query's own block and its topk − 1 gated past blocks
    (``sparse``: each selected key block with the queries that chose it; ``quadratic``: the dense masked
    reference)."""
    idx = moba_select(q, k, block_size=block_size, topk=topk)
    return selected_block_attention(q, k, v, idx, block_size, form=form)
