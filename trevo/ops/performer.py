"""Performer FAVOR+ (Choromanski et al., "Rethinking Attention with Performers", arXiv:2009.14794).

softmax attention's kernel exp(qᵀk) is estimated by positive random features (Lemma 1)

    φ(x) = exp(Wx − |x|²/2) / √m,   E[φ(q)ᵀφ(k)] = exp(qᵀk),

with the m rows of W orthogonal in blocks (section 2.4, "ORF"). Attention then becomes linear
attention with φ: o_t = φ(q_t)ᵀ Σ_j φ(k_j) v_jᵀ / φ(q_t)ᵀ Σ_j φ(k_j), the sums over j <= t
when causal (the prefix-sum form of section 2.6).

Layout: q, k ``[B, H, T, Dk]``; v ``[B, H, T, Dv]``; features ``[B, H, T, m]``; the state
S ``[B, H, m, Dv]``, z ``[B, H, m]``.
"""

from __future__ import annotations

import math

import torch


def orthogonal_gaussian(m: int, d: int, *, generator: torch.Generator | None = None,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[m, d]``: rows orthogonal within each block of d, each scaled by the norm of an independent
    Gaussian vector so that every row has the marginal law of a standard Gaussian vector."""
    g = torch.randn(math.ceil(m / d), d, d, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    # Fixing the signs by diag(R) makes Q Haar-distributed; LAPACK's own signs bias the directions.
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    rows = q.transpose(-1, -2).reshape(-1, d)[:m]
    norms = torch.randn(m, d, generator=generator, dtype=torch.float64).norm(dim=1, keepdim=True)
    return (rows * norms).to(dtype)


def positive_features(x: torch.Tensor, projection: torch.Tensor, *, stabilise: bool) -> torch.Tensor:
    """φ(x) = exp(Wx − |x|²/2) / √m, all entries > 0.

    ``stabilise`` (for queries) drops −|x|²/2 and subtracts each row's maximum of Wx: per-query
    constants, which cancel between numerator and denominator, leaving the largest feature 1/√m.
    Keys need none: Wx − |x|²/2 = |w|²/2 − |x − w|²/2 <= |w|²/2, bounded whatever x."""
    wx = x @ projection.T.to(x.dtype)
    if stabilise:
        logits = wx - wx.amax(dim=-1, keepdim=True).detach()
    else:
        logits = wx - x.square().sum(dim=-1, keepdim=True) / 2
    return torch.exp(logits) / math.sqrt(projection.shape[0])


def divide_by_sum(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den over the last axis of num, den a sum of positive weights (the normaliser of kernelized
    attention); the floor only guards an underflow to zero."""
    return num / den.clamp_min(torch.finfo(den.dtype).tiny)[..., None]


def favor_quadratic(qf: torch.Tensor, kf: torch.Tensor, v: torch.Tensor, *, causal: bool,
                   S: torch.Tensor | None = None, z: torch.Tensor | None = None) -> torch.Tensor:
    """The quadratic masked form (the reference): A = φ(Q)φ(K)ᵀ (lower-triangular when causal),
    o = A V / A 1, plus the contribution of a carried state (S, z)."""
    scores = qf @ kf.transpose(-1, -2)
    if causal:
        scores = scores.tril()
    num, den = scores @ v, scores.sum(dim=-1)
    if S is not None:
        num, den = num + qf @ S, den + (qf * z[..., None, :]).sum(dim=-1)
    return divide_by_sum(num, den)


def favor_bidirectional(qf: torch.Tensor, kf: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Bidirectional FAVOR+ in O(T·m·Dv): φ(Q) (φ(K)ᵀ V) / φ(Q) (φ(K)ᵀ 1)."""
    return divide_by_sum(qf @ (kf.transpose(-1, -2) @ v), (qf * kf.sum(dim=-2, keepdim=True)).sum(dim=-1))


def favor_prefix(qf: torch.Tensor, kf: torch.Tensor, v: torch.Tensor, S: torch.Tensor, z: torch.Tensor
                 ) -> torch.Tensor:
    """Causal FAVOR+ by prefix sums (section 2.6): S_t = S_0 + Σ_{j<=t} φ(k_j) v_jᵀ for every t at
    once with a cumulative sum, O(T·m·Dv) memory."""
    S_t = S[..., None, :, :] + torch.cumsum(kf[..., :, None] * v[..., None, :], dim=-3)
    z_t = z[..., None, :] + torch.cumsum(kf, dim=-2)
    return divide_by_sum((qf[..., None, :] @ S_t)[..., 0, :], (qf * z_t).sum(dim=-1))


def favor_chunked(qf: torch.Tensor, kf: torch.Tensor, v: torch.Tensor, S: torch.Tensor, z: torch.Tensor,
                  chunk_size: int) -> torch.Tensor:
    """Causal FAVOR+ by chunks: the masked quadratic form inside a chunk plus the state of the
    chunks before it; O(T·C) scores and one state at a time."""
    out = []
    # split views, not slices in the loop: a slice's backward scatters into a full-length zero tensor
    for qc, kc, vc in zip(*(x.split(chunk_size, dim=-2) for x in (qf, kf, v)), strict=True):
        out.append(favor_quadratic(qc, kc, vc, causal=True, S=S, z=z))
        S, z = favor_state(kc, vc, S, z)
    return torch.cat(out, dim=-2)


def favor_recurrent(qf: torch.Tensor, kf: torch.Tensor, v: torch.Tensor, S: torch.Tensor, z: torch.Tensor
                    ) -> torch.Tensor:
    """Causal FAVOR+ one step at a time (the RNN form)."""
    out = []
    for qt, kt, vt in zip(qf.unbind(-2), kf.split(1, dim=-2), v.split(1, dim=-2), strict=True):
        S, z = favor_state(kt, vt, S, z)
        out.append(divide_by_sum((qt[..., None, :] @ S)[..., 0, :], (qt * z).sum(dim=-1)))
    return torch.stack(out, dim=-2)


def favor_state(kf: torch.Tensor, v: torch.Tensor, S: torch.Tensor, z: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The state after absorbing a block: S + φ(K)ᵀV, z + Σ φ(K)."""
    return S + kf.transpose(-1, -2) @ v, z + kf.sum(dim=-2)
