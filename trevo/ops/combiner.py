"""Combiner-Fixed (Ren et al., "Combiner: Full Attention Transformer with Sparse Computation Cost",
arXiv:2107.05768, sections 3-4): attention as a conditional expectation E_{p(j|i)}[v_j] with the
structured factorisation p(j|i) = p(Ω_r|i) p(j|Ω_r): query i attends the keys of its own region Ω_0(i)
directly, and every other region through one summary key, whose value is the region's local
expectation,

    k_r = maxpool_{j∈Ω_r} k_j,   q_r = maxpool_{j∈Ω_r} q_j,   v_r = Σ_{j∈Ω_r} softmax_{j∈Ω_r}(q_r·k_j/√d) v_j,
    y_i = softmax([q_i·k_j/√d]_{j∈Ω_0(i)}, [q_i·k_r/√d]_r) · [v_j; v_r],

one softmax over both (the paper's code: max-pooled span keys and queries, a local attention for the
span value). The regions are the disjoint blocks of ``block`` tokens ("Fixed"); causally the own
region is seen up to i and only the earlier regions are summarised. Every token is reached in one
layer: full attention capability at O(T·(c + T/c)·d).

Layout: q, k, v ``[B, H, T, D]`` over the same positions; ``key_padding_mask`` ``[B, T]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def region_summaries(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, real: torch.Tensor, block: int):
    """(k_r, v_r ``[B, H, n, D]``, region has a real token ``[B, n]``) of the blocks (T a multiple of block)."""
    b, h, t, d = q.shape
    n = t // block
    r = real.view(b, 1, n, block, 1)
    qs, ks, vs = (x.view(b, h, n, block, x.shape[-1]) for x in (q, k, v))
    q_r = qs.masked_fill(~r, float("-inf")).amax(dim=3)
    k_r = ks.masked_fill(~r, float("-inf")).amax(dim=3)
    valid = r.any(dim=3)[..., 0]  # [B, 1, n]
    q_r, k_r = (torch.where(valid[..., None], x, torch.zeros_like(x)) for x in (q_r, k_r))
    local = (ks @ q_r[..., None])[..., 0] / math.sqrt(d)  # [B, H, n, c]: the span query against its keys
    local = local.masked_fill(~r[..., 0], float("-inf"))
    w = torch.nan_to_num(torch.softmax(local, dim=-1))
    v_r = (w[..., None] * vs).sum(dim=3)
    return k_r, v_r, valid[:, 0]


def combiner_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int, *, causal: bool,
                       key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    b, h, t, d = q.shape
    n = math.ceil(t / block)
    pad = n * block - t
    real = torch.ones(b, t, dtype=torch.bool, device=q.device) if key_padding_mask is None else key_padding_mask.bool()
    real = F.pad(real, (0, pad), value=False)
    q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
    k_r, v_r, valid = region_summaries(q, k, v, real, block)
    scale, floor = 1.0 / math.sqrt(d), torch.finfo(q.dtype).min
    qs, ks, vs = (x.view(b, h, n, block, x.shape[-1]) for x in (q, k, v))
    direct = (qs @ ks.transpose(-1, -2)) * scale  # [B, H, n, c, c]
    allowed = real.view(b, 1, n, 1, block)
    if causal:
        allowed = allowed & torch.ones(block, block, dtype=torch.bool, device=q.device).tril()
    direct = direct.masked_fill(~allowed, floor)
    regions = (qs @ k_r[:, :, None].transpose(-1, -2)) * scale  # [B, H, n (query block), c, n (region)]
    own = torch.arange(n, device=q.device)
    other = own[None, :] < own[:, None] if causal else own[None, :] != own[:, None]  # [query block, region]
    keep = other[None, None, :, None, :] & valid[:, None, None, None, :]
    regions = regions.masked_fill(~keep, floor)
    weights = torch.softmax(torch.cat([direct, regions], dim=-1), dim=-1)
    w_direct, w_regions = weights.split([block, n], dim=-1)
    out = w_direct @ vs + w_regions @ v_r[:, :, None]
    return out.reshape(b, h, n * block, -1)[:, :, :t]
