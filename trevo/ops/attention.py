"""Softmax attention: the naive reference, PyTorch's SDPA, and the memory-efficient chunked form.

Layout: q ``[B, H, Tq, D]``, k and v ``[B, H, Tk, D]`` (k/v heads already repeated for GQA).
When ``Tq < Tk`` (a query chunk after a KV cache) the queries are the *last* Tq positions, so the
causal mask is aligned to the bottom-right: query i sees keys j <= i + (Tk - Tq).

``bias`` is an additive ``[H, Tq, Tk]`` (or broadcastable) score bias, e.g. ALiBi.
``key_padding_mask`` is ``[B, Tk]``, True at real tokens.
"""

from __future__ import annotations

import math

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
