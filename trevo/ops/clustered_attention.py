"""Clustered attention (Vyas, Katharopoulos, Fleuret, "Fast Transformers with Clustered Attention",
arXiv:2007.04825, section 3): the queries are grouped into C clusters by K-means and attention is
computed once per cluster, with its centroid Q^c:

    A^c = softmax(Q^c Kᵀ/√d),   y_i = A^c_{c(i)} V                                      (eq. 4-6)

Improved clustered attention (section 3.3) keeps, per cluster, the k keys T_c with the largest
centroid attention and recomputes them exactly for each query, giving them the centroid's mass on them,
m̂_c = Σ_{j∈T_c} A^c_j, and the centroid attention elsewhere:

    Â_ij = m̂_c · exp(q_i·k_j/√d) / Σ_{l∈T_c} exp(q_i·k_l/√d)   (j ∈ T_c),   Â_ij = A^c_j  (j ∉ T_c).

The paper clusters Hamming codes of hashed queries; trevo runs Lloyd's K-means on the queries
themselves (Euclidean), from C real queries evenly spaced in order, for ``n_iter`` iterations. Padded
queries are left out of the clusters and padded keys out of the attention.

Layout: q, k, v ``[B, H, T, D]``; ``key_padding_mask`` ``[B, T]`` True at real tokens.
"""

from __future__ import annotations

import math

import torch


def kmeans(x: torch.Tensor, n_clusters: int, n_iter: int, real: torch.Tensor | None = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's K-means on the rows of x ``[B, H, T, D]`` (real rows only): (assignments ``[B, H, T]``,
    centroids ``[B, H, C, D]``), the centroids the (differentiable) means of their final members."""
    b, h, t, d = x.shape
    real = torch.ones(b, t, dtype=torch.bool, device=x.device) if real is None else real.bool()
    rank = real.long().cumsum(-1) - 1  # the order of each real row
    length = real.sum(-1, keepdim=True)
    wanted = torch.arange(n_clusters, device=x.device)[None, :] * length // n_clusters  # [B, C]
    first = torch.searchsorted(rank.contiguous(), wanted.contiguous()).clamp_max(t - 1)  # the wanted-th real row
    centroids = x.detach().gather(2, first[:, None, :, None].expand(b, h, n_clusters, d))
    w = real[:, None, :, None].to(x.dtype)
    for step in range(n_iter + 1):
        dist = torch.cdist(x.detach(), centroids)  # [B, H, T, C]
        assign = dist.argmin(dim=-1)
        onehot = torch.nn.functional.one_hot(assign, n_clusters).to(x.dtype) * w
        count = onehot.sum(dim=2)[..., None]  # [B, H, C, 1]
        source = x if step == n_iter else x.detach()
        means = onehot.transpose(-1, -2) @ source / count.clamp_min(1)
        centroids = torch.where(count > 0, means, centroids)  # an empty cluster keeps its centroid
    return assign, centroids


def clustered_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_clusters: int, *, n_iter: int = 10,
                        topk: int = 0, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Clustered attention; with ``topk`` > 0 the improved form with the top-k keys of each cluster."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    assign, centroids = kmeans(q, n_clusters, n_iter, key_padding_mask)
    hide = None if key_padding_mask is None else ~key_padding_mask.bool()[:, None, None, :]
    logits = centroids @ k.transpose(-1, -2) * scale  # [B, H, C, T]
    if hide is not None:
        logits = logits.masked_fill(hide, float("-inf"))
    a_c = torch.softmax(logits, dim=-1)
    per_cluster = a_c @ v  # [B, H, C, Dv]
    top_k = min(topk, k.shape[-2])
    if top_k > 0:  # remove the top keys' centroid share; each query adds them back recomputed
        top = a_c.topk(top_k, dim=-1)
        per_cluster = per_cluster - (top.values[..., None] * _rows(v, top.indices)).sum(-2)
    out = per_cluster.gather(2, assign[..., None].expand(*assign.shape, v.shape[-1]))
    if top_k <= 0:
        return out
    cluster_of = lambda x: x.gather(2, assign[..., None].expand(*assign.shape, x.shape[-1]))  # noqa: E731
    index, mass = cluster_of(top.indices), cluster_of(top.values).sum(-1, keepdim=True)  # [B, H, T, k]
    exact = (q[..., None, :] * _rows(k, index)).sum(-1) * scale
    if key_padding_mask is not None:
        real = key_padding_mask.bool()[:, None, :, None].expand(-1, q.shape[1], -1, 1)
        exact = exact.masked_fill(~_rows(real.to(q.dtype), index)[..., 0].bool(), float("-inf"))
    # a row of padded top keys has zero mass; nan_to_num turns its 0/0 into 0
    weights = torch.nan_to_num(torch.softmax(exact, dim=-1)) * mass
    return out + (weights[..., None] * _rows(v, index)).sum(-2)


def _rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x ``[B, H, T, D]`` at the positions ``index`` ``[B, H, R, k]``: ``[B, H, R, k, D]``."""
    b, h, r, kk = index.shape
    flat = x.gather(2, index.reshape(b, h, r * kk, 1).expand(b, h, r * kk, x.shape[-1]))
    return flat.view(b, h, r, kk, x.shape[-1])
