"""Softmax attention: the naive reference, PyTorch's SDPA, and the memory-efficient chunked form.

Layout: q ``[B, H, Tq, D]``, k and v ``[B, H, Tk, D]`` (k/v heads already repeated for GQA).
When ``Tq < Tk`` (a query chunk after a KV cache) the queries are the *last* Tq positions, so the
causal mask is aligned to the bottom-right: query i sees keys j <= i + (Tk - Tq).

``bias`` is an additive ``[H, Tq, Tk]`` (or broadcastable) score bias, e.g. ALiBi.
``key_padding_mask`` is ``[B, Tk]``, True at real tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from trevo.errors import TrevoError


def attention_mask(
    tq: int,
    tk: int,
    *,
    causal: bool,
    bias: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    keys: tuple[int, int] | None = None,
) -> torch.Tensor | None:
    """The additive mask ``[B|1, H|1, Tq, Tk]`` (0 or -inf, plus ``bias``), or None if none applies.

    ``keys = (start, stop)`` restricts it to that range of key positions (a chunk)."""
    start, stop = keys if keys is not None else (0, tk)
    mask = None
    if causal:
        i = torch.arange(tq, device=device)[:, None] + (tk - tq)
        j = torch.arange(start, stop, device=device)[None, :]
        mask = torch.zeros(tq, stop - start, device=device, dtype=dtype).masked_fill(j > i, float("-inf"))
        mask = mask[None, None]
    if bias is not None:
        b = bias[..., start:stop].to(dtype)
        b = b if b.dim() == 4 else b[None]
        mask = b if mask is None else mask + b
    if key_padding_mask is not None:
        kpm = key_padding_mask[:, start:stop]
        pad = torch.zeros(kpm.shape, device=device, dtype=dtype)
        pad = pad.masked_fill(~kpm.bool(), float("-inf"))[:, None, None, :]
        mask = pad if mask is None else mask + pad
    return mask


def naive_softmax_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool,
    bias: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(q kᵀ / sqrt(d) + mask) v, materialising the score matrix: the reference."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    mask = attention_mask(q.shape[-2], k.shape[-2], causal=causal, bias=bias,
                          key_padding_mask=key_padding_mask, device=q.device, dtype=q.dtype)
    if mask is not None:
        scores = scores + mask
    return torch.softmax(scores, dim=-1) @ v


def sdpa_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool,
    bias: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """PyTorch's fused ``scaled_dot_product_attention`` (flash / memory-efficient kernels)."""
    tq, tk = q.shape[-2], k.shape[-2]
    if bias is None and key_padding_mask is None and (not causal or tq == tk):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    mask = attention_mask(tq, tk, causal=causal, bias=bias, key_padding_mask=key_padding_mask,
                          device=q.device, dtype=q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def chunked_softmax_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool,
    bias: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
    chunk_size: int = 128,
) -> torch.Tensor:
    """Exact attention over key chunks with a running (online) softmax.

    Rabe & Staats, "Self-attention Does Not Need O(n²) Memory" (arXiv:2112.05682): keep per query
    the running maximum m, normaliser l and weighted sum acc; each key chunk rescales them by
    exp(m_old - m_new). Scores are held for one chunk at a time: memory O(Tq·C) instead of O(Tq·Tk).
    """
    tq, tk = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1])
    m = torch.full(q.shape[:-1] + (1,), float("-inf"), device=q.device, dtype=q.dtype)
    l = torch.zeros_like(m)
    acc = torch.zeros(q.shape[:-1] + (v.shape[-1],), device=q.device, dtype=q.dtype)
    # split views, not slices in the loop: a slice's backward scatters into a full-length zero tensor
    for start, k_c, v_c in zip(range(0, tk, chunk_size), k.split(chunk_size, dim=-2), v.split(chunk_size, dim=-2),
                               strict=True):
        stop = start + k_c.shape[-2]
        scores = q @ k_c.transpose(-1, -2) * scale
        mask = attention_mask(tq, tk, causal=causal, bias=bias, key_padding_mask=key_padding_mask,
                              device=q.device, dtype=q.dtype, keys=(start, stop))
        if mask is not None:
            scores = scores + mask
        m_new = torch.maximum(m, scores.amax(dim=-1, keepdim=True))
        # A row with every key masked so far keeps m = -inf; subtracting 0 there avoids inf - inf.
        m_safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
        p = torch.exp(scores - m_safe)
        correction = torch.exp(m - m_safe)
        l = l * correction + p.sum(dim=-1, keepdim=True)
        acc = acc * correction + p @ v_c
        m = m_new
    return acc / l


def residual_score_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    previous: torch.Tensor | None,
    *,
    causal: bool,
    bias: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """RealFormer's residual attention (He et al. 2020, arXiv:2012.11747): S = q kᵀ/√d + S_prev,
    out = softmax(S + mask) v. Returns (out, S): the raw scores (no mask) handed to the next layer."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if previous is not None:
        if previous.shape[-3:] != scores.shape[-3:]:
            raise TrevoError(f"residual attention scores of shape {tuple(previous.shape)} cannot be added to "
                             f"this layer's {tuple(scores.shape)}: RealFormer layers need equal heads")
        scores = scores + previous
    mask = attention_mask(q.shape[-2], k.shape[-2], causal=causal, bias=bias, key_padding_mask=key_padding_mask,
                          device=q.device, dtype=q.dtype)
    weights = torch.softmax(scores if mask is None else scores + mask, dim=-1)
    return weights @ v, scores


# A score bias computed per key chunk: (start, stop) of the key positions -> an additive term
# broadcastable to [B, H, Tq, stop - start] (may hold -inf), so that no [Tq, Tk] bias is ever materialised.
ScoreBias = Callable[[int, int], torch.Tensor]


def biased_softmax_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool,
    score_bias: ScoreBias | None = None,
    scale: float | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """softmax(q kᵀ · scale + causal mask + score_bias) v with the bias made per key chunk.

    ``chunk_size=None`` computes every score at once (the quadratic form); otherwise keys are taken
    ``chunk_size`` at a time with the running (online) softmax of ``chunked_softmax_attention``. A
    query that sees no key (every score -inf) gets a zero output, not NaN. Queries are the last Tq
    of the Tk positions, as everywhere in this module; v may be wider or narrower than q and k."""
    tq, tk = q.shape[-2], k.shape[-2]
    if tk == 0:  # no key at all (NSA's compressed branch before its first complete block)
        return q.new_zeros(q.shape[:-1] + (v.shape[-1],))
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    step = tk if chunk_size is None else chunk_size
    m = torch.full(q.shape[:-1] + (1,), float("-inf"), device=q.device, dtype=q.dtype)
    l = torch.zeros_like(m)
    acc = torch.zeros(q.shape[:-1] + (v.shape[-1],), device=q.device, dtype=q.dtype)
    for start, k_c, v_c in zip(range(0, tk, step), k.split(step, dim=-2), v.split(step, dim=-2), strict=True):
        stop = start + k_c.shape[-2]
        scores = q @ k_c.transpose(-1, -2) * scale
        if causal:
            scores = scores + attention_mask(tq, tk, causal=True, device=q.device, dtype=q.dtype, keys=(start, stop))
        if score_bias is not None:
            scores = scores + score_bias(start, stop)
        m_new = torch.maximum(m, scores.amax(dim=-1, keepdim=True))
        m_safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)  # rows that saw no key yet
        p = torch.exp(scores - m_safe)
        correction = torch.exp(m - m_safe)
        l = l * correction + p.sum(dim=-1, keepdim=True)
        acc = acc * correction + p @ v_c
        m = m_new
    return acc / l.clamp_min(torch.finfo(l.dtype).tiny)


def scaled_sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool, scale: float,
                          key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``scaled_dot_product_attention`` with an explicit score scale (queries and keys wider than the
    dimension the scale is taken from: MLA's absorbed form); masks as in ``sdpa_attention``."""
    tq, tk = q.shape[-2], k.shape[-2]
    if key_padding_mask is None and (not causal or tq == tk):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)
    mask = attention_mask(tq, tk, causal=causal, key_padding_mask=key_padding_mask, device=q.device, dtype=q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


def selected_block_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    block_indices: torch.Tensor,
    block_size: int,
    *,
    form: str = "sparse",
    scale: float | None = None,
) -> torch.Tensor:
    """Causal softmax attention of each query over the keys of its own selected blocks only.

    ``block_indices`` ``[B, H, Tq, n]`` holds per query the numbers of the key blocks it attends
    (block b = positions b·block_size … (b+1)·block_size − 1; −1 marks an empty slot; a block listed
    twice counts once only in ``quadratic``, so callers list each block once); a key after the query
    is never seen. ``quadratic`` masks the full ``[Tq, Tk]`` score matrix (the reference); ``sparse``
    takes the key blocks one at a time, each with the queries that chose it (a matmul of those queries
    by the block's keys), and merges each query's partial softmaxes by their maxima and sums, as
    flash attention merges its key tiles: O(T·n·block_size·d) time, and the selected queries, not the
    selected keys, are gathered (block_size times less memory traffic). NSA's selected branch and MoBA
    are this op with their own selections."""
    B, H, tq, D = q.shape
    tk = k.shape[-2]
    scale = D ** -0.5 if scale is None else scale
    if form == "quadratic":
        qpos = torch.arange(tk - tq, tk, device=q.device)
        n_blocks = -(-tk // block_size)
        chosen = torch.zeros(B, H, tq, n_blocks + 1, dtype=torch.bool, device=q.device)
        chosen.scatter_(-1, torch.where(block_indices < 0, n_blocks, block_indices), True)
        key_block = torch.arange(tk, device=q.device) // block_size
        visible = chosen[..., key_block] & (torch.arange(tk, device=q.device)[None, :] <= qpos[:, None])
        scores = (q @ k.transpose(-1, -2) * scale).masked_fill(~visible, float("-inf"))
        return _softmax_rows(scores) @ v
    if form != "sparse":
        raise ValueError(f"selected_block_attention has the forms quadratic and sparse, got {form!r}")
    n_blocks = -(-tk // block_size)
    pad = n_blocks * block_size - tk
    # every (query, selected block) pair, grouped by (batch·head, block)
    rows = torch.arange(B * H * tq, device=q.device).view(B * H, tq, 1).expand(-1, -1, block_indices.shape[-1])
    segment = torch.arange(B * H, device=q.device)[:, None, None] * n_blocks + block_indices.reshape(B * H, tq, -1)
    chosen = block_indices.reshape(B * H, tq, -1) >= 0
    segment, order = segment[chosen].sort(stable=True)
    rows = rows[chosen][order]
    counts = torch.bincount(segment, minlength=B * H * n_blocks).tolist()
    q_rows = q.reshape(B * H * tq, D)[rows]  # [P, D], one gather
    q_pos = rows % tq + (tk - tq)
    key_blocks = F.pad(k, (0, 0, 0, pad)).reshape(B * H * n_blocks, block_size, D).unbind(0)
    value_blocks = F.pad(v, (0, 0, 0, pad)).reshape(B * H * n_blocks, block_size, D).unbind(0)
    offsets = torch.arange(block_size, device=q.device)
    maxima, sums, partial = [], [], []
    # unbind and split, not per-block indexing: an index's gradient is a zero tensor of the full size.
    for s, (qs, pos) in enumerate(zip(q_rows.split(counts), q_pos.split(counts), strict=True)):
        if not counts[s]:
            continue
        scores = (qs @ key_blocks[s].transpose(0, 1)) * scale
        scores = scores.masked_fill((s % n_blocks) * block_size + offsets > pos[:, None], float("-inf"))
        top = scores.amax(dim=-1, keepdim=True).detach()  # −inf where the block is after the query
        e = torch.exp(scores - torch.where(torch.isinf(top), torch.zeros_like(top), top))
        maxima.append(top[:, 0])
        sums.append(e.sum(-1))
        partial.append(e @ value_blocks[s])
    out = q.new_zeros(B * H * tq, D)
    if not partial:
        return out.view(B, H, tq, D)
    maxima, sums, partial = torch.cat(maxima), torch.cat(sums), torch.cat(partial)
    # each query's blocks put on its largest maximum (a constant shift: no gradient needed)
    top = q.new_full((B * H * tq,), float("-inf")).scatter_reduce(0, rows, maxima, "amax")
    top = torch.where(torch.isinf(top), torch.zeros_like(top), top)  # a query that sees no key: output 0
    w = torch.exp(maxima - top[rows])
    total = q.new_zeros(B * H * tq).index_add(0, rows, w * sums)
    out = out.index_add(0, rows, w[:, None] * partial)
    return (out / total.clamp_min(torch.finfo(q.dtype).tiny)[:, None]).view(B, H, tq, D)


def _softmax_rows(scores: torch.Tensor) -> torch.Tensor:
    """softmax over the last axis; a row that is all -inf gives zeros."""
    top = scores.amax(dim=-1, keepdim=True).detach()
    e = torch.exp(scores - torch.where(torch.isinf(top), torch.zeros_like(top), top))
    return e / e.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(e.dtype).tiny)
