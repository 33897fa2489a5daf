"""Banded (sliding-window) softmax attention with each query's keys gathered into a dense window.

A query at position p sees the keys j with p − w < j <= p (causal) or |p − j| < w (bidirectional),
w = ``window``. The keys of every query are gathered as a ``[T, n_offsets]`` block (an unfolded
view), so time and memory are O(T·w·d) instead of the O(T²) of a masked dense score matrix; the
dense masked form ``banded_attention_quadratic`` is the reference.

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


def _distances(window: int, causal: bool, device) -> torch.Tensor:
    """Signed distance p − j of each offset ``[n_offsets]``."""
    return (window - 1) - torch.arange(n_offsets(window, causal), device=device)


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
    n = n_offsets(window, causal)
    right = 0 if causal else window - 1
    # Pad the key axis so that the window of every position is a full slice, then view the windows.
    kp = F.pad(k, (0, 0, window - 1, right))
    vp = F.pad(v, (0, 0, window - 1, right))
    k_win = kp.unfold(2, n, 1)[:, :, tk - tq:]  # [B, H, Tq, D, n]
    v_win = vp.unfold(2, n, 1)[:, :, tk - tq:]
    scores = torch.einsum("bhtd,bhtdn->bhtn", q, k_win) * scale
    pos = torch.arange(tk - tq, tk, device=q.device)[:, None] - _distances(window, causal, q.device)[None, :]
    valid = ((pos >= 0) & (pos < tk))[None, None]  # [1, 1, Tq, n]
    if key_padding_mask is not None:
        real = F.pad(key_padding_mask.bool(), (window - 1, right)).unfold(1, n, 1)[:, tk - tq:]  # [B, Tq, n]
        valid = valid & real[:, None]
    weights = _normalise(scores, valid, offset_weight)
    return torch.einsum("bhtn,bhtdn->bhtd", weights, v_win)


def _normalise(scores: torch.Tensor, valid: torch.Tensor, offset_weight: torch.Tensor | None) -> torch.Tensor:
    """softmax over the last axis of the valid entries, each exponent multiplied by ``offset_weight``."""
    scores = scores.masked_fill(~valid, -math.inf)
    top = scores.amax(dim=-1, keepdim=True).detach()
    top = torch.where(torch.isinf(top), torch.zeros_like(top), top)  # rows that see nothing
    e = torch.exp(scores - top)
    if offset_weight is not None:
        e = e * offset_weight.to(e.dtype)[None, :, None, :]
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
