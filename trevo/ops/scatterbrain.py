"""Scatterbrain (Chen et al., "Scatterbrain: Unifying Sparse and Low-rank Attention Approximation",
arXiv:2110.15343, section 4): the attention kernel exp(q·k) (q, k scaled by d^(-1/4)) is estimated by a
low-rank part, Performer's positive random features φ(q)ᵀφ(k), plus a sparse correction on a support S
found by locality-sensitive hashing, where the low-rank estimate is replaced by the exact value:

    Ã = φ(Q)φ(K)ᵀ + S ∘ (exp(QKᵀ) − φ(Q)φ(K)ᵀ),   y = Ã V / Ã 1.

On its support Ã is exact, so with a support covering every (query, key) pair Scatterbrain is exact
softmax attention. Ã is positive (exp on S, positive features elsewhere), so y is a convex mix.

Here the support is the pairs whose query and key fall in the same bucket of an angular LSH
(Reformer's: h(x) = argmax [xR; −xR] for a random R), restricted to j <= i when causal. The entries
are taken in log space, log Ã_ij = q·k on S and log φ(q_i)ᵀφ(k_j) off it, and normalised by a masked
softmax: stable for any scale. The computation is dense (O(T²) memory), like trevo's masked sparse
attention: the estimate is exact to the paper's, its bucketed O(T·(m + bucket)) kernel is not claimed.

Layout: q ``[B, H, Tq, D]`` (the last Tq of Tk positions), k and v ``[B, H, Tk, D]``, the feature
projection ``[m, D]``, buckets ``[B, H, Tq]`` and ``[B, H, Tk]``; ``key_padding_mask`` ``[B, Tk]``.
"""

from __future__ import annotations

import math

import torch


def lsh_buckets(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Angular LSH buckets: argmax over [xR; −xR] of the direction of x (``rotations`` ``[D, n/2]``);
    one bucket for all when ``rotations`` has no column."""
    if rotations.shape[-1] == 0:
        return torch.zeros(x.shape[:-1], dtype=torch.long, device=x.device)
    xr = x @ rotations.to(x.dtype)
    return torch.cat([xr, -xr], dim=-1).argmax(dim=-1)


def log_positive_features(x: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """log φ(x) = Wx − |x|²/2 − log √m (Performer's positive features, in log space)."""
    m = projection.shape[0]
    return x @ projection.T.to(x.dtype) - x.square().sum(-1, keepdim=True) / 2 - 0.5 * math.log(m)


def low_rank_log_kernel(q: torch.Tensor, k: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """log φ(q_i)ᵀφ(k_j) ``[B, H, Tq, Tk]``, as a_i + b_j + log Σ_f exp(lq_if − a_i) exp(lk_jf − b_j)
    with a, b each row's largest log-feature: no overflow for any scale."""
    lq, lk = log_positive_features(q, projection), log_positive_features(k, projection)
    a, b = lq.amax(-1, keepdim=True), lk.amax(-1, keepdim=True)
    dots = torch.exp(lq - a) @ torch.exp(lk - b).transpose(-1, -2)
    return a + b.transpose(-1, -2) + torch.log(dots.clamp_min(torch.finfo(dots.dtype).tiny))


def scatterbrain_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, projection: torch.Tensor,
                           q_buckets: torch.Tensor, k_buckets: torch.Tensor, *, causal: bool,
                           key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Ã V / Ã 1 with Ã exact on the same-bucket support and low-rank elsewhere (q, k pre-scaled)."""
    tq, tk = q.shape[-2], k.shape[-2]
    exact = q @ k.transpose(-1, -2)
    support = q_buckets[..., :, None] == k_buckets[..., None, :]
    log_kernel = torch.where(support, exact, low_rank_log_kernel(q, k, projection))
    allowed = torch.ones(tq, tk, dtype=torch.bool, device=q.device)
    if causal:
        rows = torch.arange(tk - tq, tk, device=q.device)
        allowed = torch.arange(tk, device=q.device)[None, :] <= rows[:, None]
    allowed = allowed[None, None]
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask.bool()[:, None, None, :]
    return torch.softmax(log_kernel.masked_fill(~allowed, float("-inf")), dim=-1) @ v
