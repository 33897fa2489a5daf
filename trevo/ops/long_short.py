"""Long-Short Transformer attention (Zhu et al., "Long-Short Transformer: Efficient Transformers for
Language and Vision", arXiv:2107.02192, section 3): each query attends, in one softmax, the keys of a
short-term sliding window and r long-range keys from a dynamic projection,

    P = softmax_over_positions(K W_P) ∈ R^{T×r},   K̄ = Pᵀ K,   V̄ = Pᵀ V                 (eq. 3)
    y = softmax([Q LN_L(K̃)ᵀ, Q LN_G(K̄)ᵀ]/√d) [LN_L(Ṽ); LN_G(V̄)]                        (eq. 4, DualLN)

with LN_L and LN_G two layer norms (the paper's DualLN, which balances the scales of the local and
the aggregated keys). The window is segment-wise: positions are cut into segments of ``window``
tokens and a query attends its own segment and its neighbours (the previous one only, and only
j <= i, when causal). Causally (section 3.3) the dynamic projection is applied to each segment on its
own, and a query attends the projected keys of the segments before its own.

Layout: q, k, v ``[B, H, T, D]`` over the same positions; ``proj`` ``[H, D, r]``; ``key_padding_mask``
``[B, T]`` True at real tokens. The norms are callables on the last dimension.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Norm = Callable[[torch.Tensor], torch.Tensor]


def _local_keys(x: torch.Tensor, n: int, w: int, causal: bool) -> torch.Tensor:
    """``[B, H, n, S·w, D]``: per segment the keys of the previous, own (and next) segments."""
    b, h, _, d = x.shape
    seg = F.pad(x.view(b, h, n, w, d), (0, 0, 0, 0, 1, 1))  # a zero segment at each end
    parts = [seg[:, :, :-2], seg[:, :, 1:-1]] + ([] if causal else [seg[:, :, 2:]])
    return torch.cat(parts, dim=3)


def long_short_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, proj: torch.Tensor, window: int,
                         norm_local: Norm, norm_global: Norm, *, causal: bool,
                         key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    b, h, t, d = q.shape
    n = math.ceil(t / window)
    pad = n * window - t
    real = torch.ones(b, t, dtype=torch.bool, device=q.device) if key_padding_mask is None else key_padding_mask.bool()
    real = F.pad(real, (0, pad), value=False)
    q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
    scale, floor = 1.0 / math.sqrt(d), torch.finfo(q.dtype).min

    # short term: the segment-wise window
    r_loc = _local_keys(real[:, None, :, None].to(q.dtype), n, window, causal)[..., 0].bool()  # [B, 1, n, S·w]
    kl, vl = norm_local(_local_keys(k, n, window, causal)), norm_local(_local_keys(v, n, window, causal))
    qs = q.view(b, h, n, window, d)
    local = (qs @ kl.transpose(-1, -2)) * scale  # [B, H, n, w, S·w]
    allowed = r_loc[:, :, :, None, :]
    if causal:  # own segment: j <= i; the previous segment: all
        own = torch.ones(window, window, dtype=torch.bool, device=q.device).tril()
        allowed = allowed & torch.cat([torch.ones_like(own), own], dim=1)
    local = local.masked_fill(~allowed, floor)

    # long term: the dynamic projection (per segment when causal)
    logits = k @ proj.to(k.dtype)  # [B, H, T', r]
    r = proj.shape[-1]
    if causal:
        logits = logits.view(b, h, n, window, r).masked_fill(~real.view(b, 1, n, window, 1), float("-inf"))
        p = torch.nan_to_num(torch.softmax(logits, dim=3))  # an all-padding segment projects to zeros
        kg = norm_global(p.transpose(-1, -2) @ k.view(b, h, n, window, d)).reshape(b, h, n * r, d)
        vg = norm_global(p.transpose(-1, -2) @ v.view(b, h, n, window, -1)).reshape(b, h, n * r, -1)
        segment = torch.arange(n, device=q.device)
        earlier = (segment[None, :] < segment[:, None]).repeat_interleave(r, dim=1)  # [n query seg, n·r]
        glob = (qs @ kg[:, :, None].transpose(-1, -2)) * scale  # [B, H, n, w, n·r]
        glob = glob.masked_fill(~earlier[None, None, :, None, :], floor)
    else:
        p = torch.softmax(logits.masked_fill(~real[:, None, :, None], float("-inf")), dim=2)
        kg, vg = norm_global(p.transpose(-1, -2) @ k), norm_global(p.transpose(-1, -2) @ v)  # [B, H, r, D]
        glob = (qs @ kg[:, :, None].transpose(-1, -2)) * scale  # [B, H, n, w, r]
    weights = torch.softmax(torch.cat([local, glob], dim=-1), dim=-1)
    w_local, w_glob = weights.split([local.shape[-1], glob.shape[-1]], dim=-1)
    out = w_local @ vl + w_glob @ vg[:, :, None]
    return out.reshape(b, h, n * window, -1)[:, :, :t]


def long_short_attention_quadratic(q, k, v, proj, window, norm_local, norm_global, *, causal: bool) -> torch.Tensor:
    """The reference, one query at a time from the definitions (no padding)."""
    b, h, t, d = q.shape
    out = torch.zeros_like(q)
    seg = torch.arange(t) // window
    for i in range(t):
        s = int(seg[i])
        near = [j for j in range(t) if (s - 1 <= seg[j] <= s + (0 if causal else 1)) and (not causal or j <= i)]
        if causal:
            kg, vg = [], []
            for g in range(s):
                idx = (seg == g).nonzero().flatten()
                p = torch.softmax(k[:, :, idx] @ proj, dim=2)  # [B, H, w, r]
                kg.append(p.transpose(-1, -2) @ k[:, :, idx])
                vg.append(p.transpose(-1, -2) @ v[:, :, idx])
            kg = torch.cat(kg, 2) if kg else k[:, :, :0]
            vg = torch.cat(vg, 2) if vg else v[:, :, :0]
        else:
            p = torch.softmax(k @ proj, dim=2)
            kg, vg = p.transpose(-1, -2) @ k, p.transpose(-1, -2) @ v
        keys = torch.cat([norm_local(k[:, :, near]), norm_global(kg)], dim=2)
        vals = torch.cat([norm_local(v[:, :, near]), norm_global(vg)], dim=2)
        a = torch.softmax((keys @ q[:, :, i, :, None])[..., 0] / math.sqrt(d), dim=-1)
        out[:, :, i] = (a[..., None] * vals).sum(2)
    return out
