"""Block-sparse softmax attention for the fixed patterns of ``trevo.ops.sparse_patterns``: only the
(query, key) pairs a pattern can touch are scored, never a T × T matrix.

Layout: q, k, v ``[B, H, T, D]``; ``padding_mask`` ``[B, T]`` (True at real tokens; a padded query
keeps its own key, as the dense form does). Each pattern is a union of two disjoint key sets per
query, each computed as a partial softmax (unnormalised sum, normaliser, maximum) and merged at the
common maximum (Milakov & Gimelshein 2018's online softmax):

- sliding window (0 <= i − j < w causally, |i − j| < w both ways): query blocks of c >= w positions
  against their own and neighbouring key blocks, O(T·c·D);
- Sparse Transformer strided (Child et al. 2019, §4.2): the band i − j < l plus, per residue
  r = i mod l, attention down the column of positions r, r + l, r + 2l, … (j ≡ i mod l, j != i):
  O(T·(c + T/l)·D), O(T·√T·D) at l ≈ √T;
- fixed: the query's own block of l plus the c summary positions (j mod l >= l − c) of the other
  (causally: earlier) blocks, O(T·(l + T·c/l)·D).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

NEG_INF = float("-inf")
MIN_BLOCK = 64  # query blocks of the band: narrower ones make many tiny matmuls


Partial = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _partial(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor) -> Partial:
    """(Σ_j e^{s_ij − m_i} v_j, Σ_j e^{s_ij − m_i}, m_i) over the allowed keys; m = −inf for a row
    with none (it then adds nothing when merged)."""
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    s = s.masked_fill(~allowed, NEG_INF)
    m = s.amax(dim=-1, keepdim=True)
    p = torch.exp(s - torch.where(torch.isinf(m), torch.zeros_like(m), m))
    return p @ v, p.sum(dim=-1, keepdim=True), m


def _merge(a: Partial, b: Partial) -> torch.Tensor:
    (na, da, ma), (nb, db, mb) = a, b
    m = torch.maximum(ma, mb)  # finite: every query sees at least its own key in the first part
    ca, cb = torch.exp(ma - m), torch.exp(mb - m)
    return (na * ca + nb * cb) / (da * ca + db * cb)


def _key_ok(positions: torch.Tensor, T: int, padding_mask: torch.Tensor | None,
            own: torch.Tensor | None = None) -> torch.Tensor:
    """Keys at ``positions`` that exist (< T) and are real (or are the query's own key)."""
    ok = (positions >= 0) & (positions < T)
    if padding_mask is not None:
        real = F.pad(padding_mask.bool(), (0, 1))[:, positions.clamp(0, T)]  # [B, *positions.shape]
        if own is not None:
            real = real | own
        ok = ok & real
    return ok


def _heads(allowed: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
    """An allowed-pairs mask (led by B when there is a padding mask) broadcast over batch and heads."""
    return allowed[:, None] if padding_mask is not None else allowed[None, None]


def _pad_time(x: torch.Tensor, length: int) -> torch.Tensor:
    return F.pad(x, (0, 0, 0, length - x.shape[-2]))


def _band(q, k, v, window: int, causal: bool, padding_mask) -> Partial:
    """The partial softmax over the band 0 <= i − j < window (|i − j| < window bidirectionally)."""
    B, H, T, D = q.shape
    c = max(window, MIN_BLOCK) if T > max(window, MIN_BLOCK) else T
    nb = -(-T // c)
    qb = _pad_time(q, nb * c).unflatten(2, (nb, c))  # [B, H, nb, c, D]
    neighbours = (-1, 0) if causal else (-1, 0, 1)
    kp, vp = (_pad_time(F.pad(x, (0, 0, c, c)), (nb + 2) * c).unflatten(2, (nb + 2, c)) for x in (k, v))
    kb = torch.cat([kp[:, :, 1 + o:1 + o + nb] for o in neighbours], dim=3)  # [B, H, nb, n·c, D]
    vb = torch.cat([vp[:, :, 1 + o:1 + o + nb] for o in neighbours], dim=3)
    blocks = torch.arange(nb, device=q.device)[:, None]
    rows = blocks * c + torch.arange(c, device=q.device)  # [nb, c]
    cols = torch.cat([(blocks + o) * c + torch.arange(c, device=q.device) for o in neighbours], dim=1)  # [nb, n·c]
    lag = rows[:, :, None] - cols[:, None, :]
    allowed = (lag >= 0) & (lag < window) if causal else lag.abs() < window
    own = (lag == 0)[None] if padding_mask is not None else None
    allowed = allowed & _key_ok(cols[:, None, :], T, padding_mask, own)
    num, den, m = _partial(qb, kb, vb, _heads(allowed, padding_mask))
    return tuple(x.flatten(2, 3)[:, :, :T] for x in (num, den, m))


def sliding_window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, *, causal: bool,
                             padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax attention over 0 <= i − j < window (|i − j| < window bidirectionally), O(T·window·D)."""
    num, den, _ = _band(q, k, v, window, causal, padding_mask)
    return num / den


def strided_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, stride: int, *, causal: bool,
                      padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The Sparse Transformer's strided pattern: the band i − j < l and the column j ≡ i (mod l)."""
    B, H, T, D = q.shape
    band = _band(q, k, v, stride, causal, padding_mask)
    nb = -(-T // stride)
    # column r holds positions r, r + l, …: [B, H, l, nb, D]
    qc, kc, vc = (_pad_time(x, nb * stride).unflatten(2, (nb, stride)).transpose(2, 3) for x in (q, k, v))
    row = torch.arange(nb, device=q.device)
    pos = row[None, :] * stride + torch.arange(stride, device=q.device)[:, None]  # [l, nb]
    # j != i (the band has i itself); causally only the rows above: j = i − l, i − 2l, …
    allowed = (row[None, :] < row[:, None]) if causal else (row[None, :] != row[:, None])
    allowed = allowed & _key_ok(pos[:, None, :], T, padding_mask)  # [(B,) l, nb, nb]
    num, den, m = _partial(qc, kc, vc, _heads(allowed, padding_mask))
    column = tuple(x.transpose(2, 3).flatten(2, 3)[:, :, :T] for x in (num, den, m))
    return _merge(band, column)


def fixed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, stride: int, summary: int, *,
                    causal: bool, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The Sparse Transformer's fixed pattern: the query's block of l and the summary positions
    (j mod l >= l − summary) of the other blocks (causally: of the earlier ones)."""
    B, H, T, D = q.shape
    nb = -(-T // stride)
    qb, kb, vb = (_pad_time(x, nb * stride).unflatten(2, (nb, stride)) for x in (q, k, v))
    idx = torch.arange(stride, device=q.device)
    pos = torch.arange(nb, device=q.device)[:, None] * stride + idx  # [nb, l]
    inside = (idx[:, None] >= idx[None, :]) if causal else torch.ones(stride, stride, dtype=torch.bool,
                                                                      device=q.device)
    own = torch.eye(stride, dtype=torch.bool, device=q.device)[None, None] if padding_mask is not None else None
    allowed = inside & _key_ok(pos[:, None, :], T, padding_mask, own)  # [(B,) nb, l, l]
    block = tuple(x.flatten(2, 3)[:, :, :T] for x in _partial(qb, kb, vb, _heads(allowed, padding_mask)))
    ks, vs = kb[:, :, :, stride - summary:].flatten(2, 3), vb[:, :, :, stride - summary:].flatten(2, 3)
    key_block = torch.arange(nb, device=q.device).repeat_interleave(summary)  # [nb·c]
    key_pos = pos[:, stride - summary:].flatten()
    query_block = torch.arange(T, device=q.device) // stride
    other = (key_block[None] < query_block[:, None]) if causal else (key_block[None] != query_block[:, None])
    allowed = other & _key_ok(key_pos[None, :], T, padding_mask)  # [(B,) T, nb·c]
    return _merge(block, _partial(q, ks, vs, _heads(allowed, padding_mask)))
