"""DeltaFormer: the delta rule in the feature space of the softmax kernel, as attention over corrected values.

Zhong et al., "Understanding Transformer from the Perspective of Associative Memory" (arXiv:2505.19488),
the DeltaFormer. The memory written at step t is the value minus what the softmax-kernel memory
already returns for it, and the output reads the corrected values with causal softmax attention:

    u_t = v_t − β_t Σ_{j<t} softmax_{j<t}(s c_tᵀ k_j) u_j,        o_t = Σ_{j<=t} softmax_{j<=t}(s q_tᵀ k_j) u_j

(s = 1/√D; u_0 = v_0). The correction reads with c_t = k_t, the kernel κ(k_t, k_j) of the delta rule (as
flash-linear-attention's layer calls it); ``correction_query`` sets another c (fla's reference op takes
it as an argument). Layout: q, k, c ``[B, H, T, D]``, v ``[B, H, T, Dv]``, beta ``[B, H, T]``. The
generation state is a cache of the keys and the corrected values u.

The corrections of a block of queries solve the unit lower-triangular system
(I + diag(β) P_block) U_block = V_block − diag(β) P_past U_past, with P the strictly causal softmax
weights (normalised over every earlier key, cached ones included); the outputs are then one causal
softmax attention over the corrected values (``torch.nn.functional.scaled_dot_product_attention``).
Forms: ``chunk`` (blocks of ``chunk_size`` queries: O(T²·D) time, O(C·T) memory at inference; in
training autograd keeps every block's weights, O(T²)), ``quadratic`` (one block: the whole T × T system)
and ``recurrent`` (one token at a time against the cache).
"""

from __future__ import annotations

import math

import torch

from trevo.errors import TrevoError
from trevo.ops.attention import sdpa_attention

FORMS = ("chunk", "quadratic", "recurrent")


def deltaformer(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, *,
                correction_query: torch.Tensor | None = None, cache_k: torch.Tensor | None = None,
                cache_u: torch.Tensor | None = None,
                form: str = "chunk", chunk_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(o ``[B, H, T, Dv]``, u ``[B, H, T, Dv]``: the corrected values of the new tokens, to cache) for
    queries after the cached keys ``cache_k`` ``[B, H, L, D]`` and corrected values ``cache_u``."""
    if q.dim() != 4 or q.shape != k.shape or v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise TrevoError(f"expected q, k [B, H, T, D] and v [B, H, T, Dv]; got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}, v {tuple(v.shape)}")
    B, H, T, D = q.shape
    c = k if correction_query is None else correction_query
    if c.shape != k.shape:
        raise TrevoError(f"correction_query must have the keys' shape {tuple(k.shape)}, got {tuple(c.shape)}")
    if beta.shape != (B, H, T):
        raise TrevoError(f"beta must be [B, H, T] = {(B, H, T)}, got {tuple(beta.shape)}")
    if cache_k is None:
        cache_k, cache_u = k.new_zeros(B, H, 0, D), v.new_zeros(B, H, 0, v.shape[-1])
    if form == "auto":
        form = "recurrent" if T == 1 else "chunk"
    if form not in FORMS:
        raise TrevoError(f"unknown form {form!r}; choose one of auto, {', '.join(FORMS)}")
    if form == "chunk" and chunk_size < 1:
        raise TrevoError(f"chunk_size must be >= 1, got {chunk_size}")
    if T == 0:
        return v.new_zeros(v.shape), v.new_zeros(v.shape)
    C = {"chunk": chunk_size, "quadratic": max(T, 1), "recurrent": 1}[form]
    L = cache_k.shape[2]
    keys = torch.cat([cache_k.to(q.dtype), k], dim=2)
    scale = 1 / math.sqrt(D)
    us = [cache_u.to(v.dtype)]
    # split views, not slices in the loop: a slice's backward scatters into a full-length zero tensor
    blocks = zip(range(0, T, C), c.split(C, dim=2), v.split(C, dim=2), beta.split(C, dim=2), strict=True)
    for start, cb, vb, bb in blocks:
        n = cb.shape[2]
        stop = L + start + n  # keys this block sees
        seen = keys[:, :, :stop].transpose(-1, -2)
        row = torch.arange(n, device=q.device)[:, None] + L + start
        col = torch.arange(stop, device=q.device)[None, :]
        strict = _softmax((cb @ seen) * scale, col < row)  # [B, H, n, stop]
        past = torch.cat(us, dim=2)
        rhs = vb - bb[..., None] * (strict[..., :L + start] @ past)
        eye = torch.eye(n, dtype=q.dtype, device=q.device)
        ub = torch.linalg.solve_triangular(eye + bb[..., None] * strict[..., L + start:], rhs, upper=False,
                                           unitriangular=True)
        us.append(ub)
    values = torch.cat(us, dim=2)
    # The read is plain causal softmax attention over the corrected values (queries after the cache).
    return sdpa_attention(q, keys, values, causal=True), values[:, :, L:]


def _softmax(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Row softmax over the allowed entries; a row with none (the first token's strict row) is all zeros."""
    masked = scores.masked_fill(~allowed, -math.inf)
    top = masked.amax(dim=-1, keepdim=True)
    top = torch.where(torch.isinf(top), torch.zeros_like(top), top)
    e = torch.exp(masked - top)
    return e / e.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)
