"""Hamburger's "hams": matrix decompositions of the channels × positions matrix, each with the one-step
gradient (Geng et al., "Is Attention Better Than Matrix Decomposition?", arXiv:2109.04553, §2.2 and §3):
non-negative matrix factorisation by multiplicative updates (NMF, below), vector quantisation (VQ) and
concept decomposition (CD), the last two after the NMF functions.

For non-negative X ∈ R^{d×n} (channels × positions) and rank r: X ≈ D Cᵀ, D ∈ R^{d×r}, C ∈ R^{n×r},
by Lee and Seung's updates

    C ← C ⊙ (Xᵀ D) / (C Dᵀ D),   D ← D ⊙ (X C) / (D Cᵀ C),

from C₀ = softmax(Xᵀ D₀) (row-wise). ``n_steps`` updates run without gradient; one more update of C
then runs with gradient, so that the backward pass is that of a single step (the paper's one-step
gradient, which avoids the unstable gradient of the unrolled iteration). Layout: x ``[N, d, n]``,
bases ``[N, d, r]``; ε = 1e-6 in every denominator, as in the paper's code.
"""

from __future__ import annotations

import torch

EPS = 1e-6


def update_coef(x: torch.Tensor, bases: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """C ⊙ (Xᵀ D) / (C Dᵀ D + ε)."""
    return coef * (x.transpose(1, 2) @ bases) / (coef @ (bases.transpose(1, 2) @ bases) + EPS)


def update_bases(x: torch.Tensor, bases: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """D ⊙ (X C) / (D Cᵀ C + ε)."""
    return bases * (x @ coef) / (bases @ (coef.transpose(1, 2) @ coef) + EPS)


def nmf(x: torch.Tensor, bases: torch.Tensor, n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(D, C) after ``n_steps`` alternating updates from C₀ = softmax(Xᵀ D₀)."""
    coef = torch.softmax(x.transpose(1, 2) @ bases, dim=-1)
    for _ in range(n_steps):
        coef = update_coef(x, bases, coef)
        bases = update_bases(x, bases, coef)
    return bases, coef


def ham_nmf(x: torch.Tensor, bases: torch.Tensor, n_steps: int) -> torch.Tensor:
    """The reconstruction D Cᵀ ``[N, d, n]`` with the one-step gradient: the iteration runs under
    no_grad; the last update of C (and so the output) is differentiable in x only."""
    with torch.no_grad():
        bases, coef = nmf(x, bases, n_steps)
    coef = update_coef(x, bases, coef)
    return bases @ coef.transpose(1, 2)


def _cosine_assignment(x: torch.Tensor, bases: torch.Tensor, inverse_temperature: float) -> torch.Tensor:
    """softmax over the r bases of inverse_temperature · cos(x_n, d_r): ``[N, n, r]``. The norms of x are
    constants of the gradient, as in the paper's code."""
    unit_x = x / (x.detach().norm(dim=1, keepdim=True) + EPS)
    unit_bases = bases / (bases.norm(dim=1, keepdim=True) + EPS)
    return torch.softmax(inverse_temperature * unit_x.transpose(1, 2) @ unit_bases, dim=-1)


def _cluster_means(x: torch.Tensor, coef: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """D = X C diag(1ᵀC)⁻¹ over the real positions (``mask [N, n]``): each basis is the mean of the columns
    assigned to it."""
    if mask is not None:
        coef = coef * mask[..., None]
    return x @ (coef / (coef.sum(dim=1, keepdim=True) + EPS))


def ham_vq(x: torch.Tensor, bases: torch.Tensor, n_steps: int, inverse_temperature: float,
           mask: torch.Tensor | None = None) -> torch.Tensor:
    """The vector-quantisation ham (§2.2, Alg. VQ): soft spherical k-means. ``n_steps`` rounds of
    C = softmax(inverse_temperature · cos(X, D)) and D = X C diag(1ᵀC)⁻¹ run without gradient; the output
    D Cᵀ ``[N, d, n]`` takes one more, differentiable assignment C (the one-step gradient)."""
    with torch.no_grad():
        for _ in range(n_steps):
            bases = _cluster_means(x, _cosine_assignment(x, bases, inverse_temperature), mask)
    return bases @ _cosine_assignment(x, bases, inverse_temperature).transpose(1, 2)


def ham_cd(x: torch.Tensor, bases: torch.Tensor, n_steps: int, inverse_temperature: float, ridge: float,
           mask: torch.Tensor | None = None) -> torch.Tensor:
    """The concept-decomposition ham (§2.2, Alg. CD; Dhillon & Modha 2001): ``n_steps`` rounds of soft
    spherical k-means give unit concept vectors D (without gradient); the coefficients are then the ridge
    least-squares fit C = Xᵀ D (DᵀD + ridge·I)⁻¹, differentiable in X, and the output is D Cᵀ ``[N, d, n]``."""
    with torch.no_grad():
        for _ in range(n_steps):
            bases = _cluster_means(x, _cosine_assignment(x, bases, inverse_temperature), mask)
            bases = bases / (bases.norm(dim=1, keepdim=True) + EPS)
    r = bases.shape[-1]
    gram = bases.transpose(1, 2) @ bases + ridge * torch.eye(r, dtype=x.dtype, device=x.device)
    return bases @ torch.linalg.solve(gram, bases.transpose(1, 2) @ x)
