"""Banded (sliding-window) softmax attention, computed block by block.

A query at position p sees the keys j with p − w < j <= p (causal) or |p − j| < w (bidirectional),
w = ``window``. Queries are taken in blocks of c = max(w, 32) (fewer when there are fewer queries);
a block's keys are one contiguous span of c + w − 1 (causal) or c + 2w − 2 keys, an overlapping
(unfolded) view of the keys, so every block is one dense matmul, masked to the band: O(T·(c + w)·d)
time and O(T·(c + w)) memory instead of the O(T²) of a masked dense score matrix. The dense masked
form ``banded_attention_quadratic`` is the reference.

Layout: q ``[B, H, Tq, D]``, k and v ``[B, H, Tk, D]``, Tq <= Tk: the queries are the *last* Tq
positions (a chunk after a cache of Tk − Tq keys), as in ``trevo.ops.attention``. Bidirectional
attention needs Tq = Tk. Offsets o = 0 … n_offsets − 1 index a query's window from its oldest key:
causally key j = p − (w − 1) + o (distance w − 1 − o), bidirectionally j = p − (w − 1) + o with
n_offsets = 2w − 1.

``offset_weight`` ``[H, n_offsets]`` (optional) multiplies the exponentiated scores before they are
normalised, a_pj = m_o exp(s_pj) / Σ m_o' exp(s_pj'): the soft span mask of adaptive attention span.
``key_padding_mask`` ``[B, Tk]`` is True at real tokens. A query that sees no key (only padded
queries can) gets a zero output rather than NaN.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def n_offsets(window: int, causal: bool) -> int:
    """The number of key positions in one query's window."""
    return window if causal else 2 * window - 1


def banded_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, window: int, causal: bool,
                     offset_weight: torch.Tensor | None = None, key_padding_mask: torch.Tensor | None = None,
                     scale: float | None = None) -> torch.Tensor:
    """Softmax attention restricted to a band of ``window`` keys per side (see the module docstring)."""
    B, H, tq, D = q.shape
    tk = k.shape[2]
    if not causal and tq != tk:
        raise ValueError(f"bidirectional banded attention needs as many queries as keys, got {tq} and {tk}")
    scale = D ** -0.5 if scale is None else scale
    if window > tk:  # offsets farther than the sequence hold no key: drop them (exactly)
        if offset_weight is not None:
            offset_weight = offset_weight[:, window - tk:window - tk + n_offsets(tk, causal)]
        window = tk
    right = 0 if causal else window - 1
    c = max(1, min(max(window, 32), tq))  # a block of 32 or more queries; a single step is one query
    nblk = -(-tq // c)
    span = c + window - 1 + right  # keys of one query block
    first = tk - tq  # key position of the first query
    # Padded key index = key index + window − 1; block b's span starts at padded index first + b·c.
    total = first + (nblk - 1) * c + span
    pad_right = total - (tk + window - 1)

    def spans(x: torch.Tensor) -> torch.Tensor:  # [B, H, Tk, D] → [B, H, nblk, span, D] (a view)
        xp = F.pad(x, (0, 0, window - 1, max(pad_right, 0)))[:, :, first:]
        return xp.unfold(2, span, c).transpose(-1, -2)

    qb = F.pad(q, (0, 0, 0, nblk * c - tq)).unflatten(2, (nblk, c))  # [B, H, nblk, c, D]
    scores = qb @ spans(k).transpose(-1, -2) * scale  # [B, H, nblk, c, span]
    r = torch.arange(c, device=q.device)[:, None]
    lpos = torch.arange(span, device=q.device)[None, :]
    dist = r + (window - 1) - lpos  # query position − key position, the same in every block
    band = (dist >= 0) & (dist < window) if causal else dist.abs() < window
    key = first + torch.arange(nblk, device=q.device)[:, None, None] * c - (window - 1) + lpos[None]  # [nblk, 1, span]
    valid = band[None] & (key >= 0) & (key < tk)  # [nblk, c, span]
    valid = valid[None, None]
    if key_padding_mask is not None:
        real = F.pad(key_padding_mask.bool(), (window - 1, max(pad_right, 0)))[:, first:].unfold(1, span, c)
        valid = valid & real[:, None, :, None, :]  # [B, 1, nblk, 1, span]
    weight = None
    if offset_weight is not None:  # offset o = (w − 1) − dist = l − r
        weight = offset_weight[:, (lpos - r).clamp(0, offset_weight.shape[-1] - 1)]  # [H, c, span]
        weight = weight[None, :, None]
    w = _normalise(scores, valid, weight)
    return (w @ spans(v)).flatten(2, 3)[:, :, :tq]


def _normalise(scores: torch.Tensor, valid: torch.Tensor, offset_weight: torch.Tensor | None) -> torch.Tensor:
    """softmax over the last axis of the valid entries, each exponent multiplied by ``offset_weight``."""
    scores = scores.masked_fill(~valid, -math.inf)
    top = scores.amax(dim=-1, keepdim=True).detach()
    top = torch.where(torch.isinf(top), torch.zeros_like(top), top)  # rows that see nothing
    e = torch.exp(scores - top)
    if offset_weight is not None:  # already broadcastable to the scores
        e = e * offset_weight.to(e.dtype)
    return e / e.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(e.dtype).tiny)


def banded_attention_quadratic(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, window: int, causal: bool,
                               offset_weight: torch.Tensor | None = None,
                               key_padding_mask: torch.Tensor | None = None,
                               scale: float | None = None) -> torch.Tensor:
    """The reference: the full ``[Tq, Tk]`` score matrix, masked to the band, weighted by distance."""
    tq, tk, D = q.shape[2], k.shape[2], q.shape[-1]
    scale = D ** -0.5 if scale is None else scale
    scores = q @ k.transpose(-1, -2) * scale
    dist = torch.arange(tk - tq, tk, device=q.device)[:, None] - torch.arange(tk, device=q.device)[None, :]
    valid = (dist >= 0) & (dist < window) if causal else dist.abs() < window
    valid = valid[None, None]
    if key_padding_mask is not None:
        valid = valid & key_padding_mask.bool()[:, None, None, :]
    weight = None
    if offset_weight is not None:  # gather the weight of each (query, key) pair by its offset
        offset = ((window - 1) - dist).clamp(0, offset_weight.shape[-1] - 1)
        weight = offset_weight[:, offset]  # [H, Tq, Tk]
    scores = scores.masked_fill(~valid, -math.inf)
    top = scores.amax(dim=-1, keepdim=True).detach()
    top = torch.where(torch.isinf(top), torch.zeros_like(top), top)
    e = torch.exp(scores - top)
    if weight is not None:
        e = e * weight.to(e.dtype)[None]
    return (e / e.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(e.dtype).tiny)) @ v
