"""Hamburger's "ham": non-negative matrix factorisation solved by multiplicative updates, with the
one-step gradient (Geng et al., "Is Attention Better Than Matrix Decomposition?", arXiv:2109.04553,
§2.2 and §3, Alg. NMF).

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
