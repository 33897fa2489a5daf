"""Native sparse attention (NSA; Yuan et al., "Native Sparse Attention: Hardware-Aligned and Natively
Trainable Sparse Attention", arXiv:2502.11089): three causal branches over the same queries.

- compressed: the keys (values) of each block of l = ``block_size`` tokens taken every d = ``stride``
  tokens are compressed into one key (value); query t sees block i once it is complete, i·d + l − 1 <= t;
- selected: the keys of a query's ``topk`` selection blocks of l' = ``select_block_size`` tokens,
  chosen by importance p_slc = the compressed branch's attention probabilities summed over the
  compression blocks that overlap each selection block (eq. 9's intent; with l = l' = d it is p_cmp
  itself), averaged over the query heads sharing a key head (eq. 10), block 0 and the query's own and
  previous blocks always chosen (as fla's reference); causal inside the own block;
- sliding: the last ``window`` keys (``trevo.ops.banded_attention``).

Each branch is one softmax; the mixer mixes them with learned gates. Selection is discrete (no
gradient). Layout as in ``trevo.ops.attention``: q ``[B, H, Tq, D]`` the last Tq of Tk positions.
"""

from __future__ import annotations

import torch

from trevo.ops.attention import biased_softmax_attention

FORMS = ("sparse", "quadratic")


def n_compressed(length: int, block_size: int, stride: int) -> int:
    """How many compression blocks are complete among ``length`` tokens."""
    return 0 if length < block_size else (length - block_size) // stride + 1


def compression_blocks(x: torch.Tensor, block_size: int, stride: int, start: int = 0) -> torch.Tensor:
    """``[B, H, N, block_size, D]``: the complete blocks of x ``[B, H, T, D]`` from block number ``start``."""
    n = n_compressed(x.shape[2], block_size, stride)
    x = x[:, :, start * stride:(n - 1) * stride + block_size] if n > start else x[:, :, :0]
    if x.shape[2] < block_size:
        return x.new_zeros(x.shape[:2] + (0, block_size, x.shape[-1]))
    return x.unfold(2, block_size, stride).transpose(-1, -2)


def _visible(tq: int, tk: int, n_blocks: int, block_size: int, stride: int, device) -> torch.Tensor:
    """``[Tq, N]``: query (at position tk − tq + row) sees compression block i, i·d + l − 1 <= t."""
    qpos = torch.arange(tk - tq, tk, device=device)[:, None]
    return torch.arange(n_blocks, device=device)[None, :] * stride + block_size - 1 <= qpos


def compressed_attention(q: torch.Tensor, k_cmp: torch.Tensor, v_cmp: torch.Tensor, *, tk: int, block_size: int,
                         stride: int, form: str = "sparse", chunk_size: int = 256,
                         scale: float | None = None) -> torch.Tensor:
    """The compressed branch: softmax over the complete compressed blocks (zero before the first one).
    ``tk`` is the number of key positions the queries are the last of."""
    tq = q.shape[2]

    def mask(start: int, stop: int) -> torch.Tensor:
        seen = _visible(tq, tk, stop, block_size, stride, q.device)[:, start:stop]
        return torch.zeros(seen.shape, dtype=q.dtype, device=q.device).masked_fill(~seen, float("-inf"))

    return biased_softmax_attention(q, k_cmp, v_cmp, causal=False, score_bias=mask, scale=scale,
                                    chunk_size=None if form == "quadratic" else chunk_size)


@torch.no_grad()
def select_blocks(q: torch.Tensor, k_cmp: torch.Tensor, *, tk: int, block_size: int, stride: int,
                  select_block_size: int, topk: int, scale: float | None = None,
                  query_chunk: int = 512) -> torch.Tensor:
    """``[B, Hkv, Tq, topk]`` selection block numbers per query and key head (−1: an empty slot).

    q ``[B, Hkv, G, Tq, D]`` (the G query heads of each key head), k_cmp ``[B, Hkv, N, D]``."""
    B, Hk, G, tq, D = q.shape
    n_blocks = k_cmp.shape[2]
    scale = D ** -0.5 if scale is None else scale
    n_select = -(-tk // select_block_size)
    cmp_start = torch.arange(n_blocks, device=q.device) * stride
    sel_start = torch.arange(n_select, device=q.device) * select_block_size
    overlap = ((cmp_start[:, None] < sel_start[None, :] + select_block_size)
               & (cmp_start[:, None] + block_size > sel_start[None, :])).to(q.dtype)  # [N, Ns]
    qpos = torch.arange(tk - tq, tk, device=q.device)
    picks = []
    for start in range(0, tq, query_chunk):
        qc = q[:, :, :, start:start + query_chunk]
        rows = qc.shape[3]
        seen = _visible(rows, tk - tq + start + rows, n_blocks, block_size, stride, q.device)
        scores = (qc @ k_cmp[:, :, None].transpose(-1, -2) * scale).masked_fill(~seen, float("-inf"))
        top = scores.amax(dim=-1, keepdim=True) if n_blocks else scores.new_zeros(scores.shape[:-1] + (1,))
        p = torch.exp(scores - torch.where(torch.isinf(top), torch.zeros_like(top), top))
        p = p / p.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)
        importance = (p @ overlap).mean(dim=2)  # [B, Hk, rows, Ns], each in [0, 1]
        own = (qpos[start:start + rows] // select_block_size)[:, None]
        block = torch.arange(n_select, device=q.device)[None, :]
        importance = torch.where(block == own, 4.0, importance)  # forced: own > previous > first
        importance = torch.where(block == own - 1, 3.0, importance)
        importance = torch.where(block == 0, torch.maximum(importance, torch.full_like(importance, 2.0)), importance)
        importance = importance.masked_fill(block > own, float("-inf"))
        score, idx = importance.topk(min(topk, n_select), dim=-1)
        idx = torch.where(torch.isinf(score), -1, idx)
        if idx.shape[-1] < topk:
            idx = torch.cat([idx, idx.new_full(idx.shape[:-1] + (topk - idx.shape[-1],), -1)], dim=-1)
        picks.append(idx)
    return torch.cat(picks, dim=2)
