"""Learned-kernel attention (Chowdhury et al., "On Learning the Transformer Kernel", arXiv:2110.08323, §3).

Linear attention φ(Q)(φ(K)ᵀV) / φ(Q)(φ(K)ᵀ1) whose kernel is learned through its spectral
distribution: the M frequencies are ω = μ_c + σ_c ⊙ ε with ε ~ N(0, I) drawn once and the Gaussian
mixture (μ_c, σ_c), c = 1 … C, learned (M/C frequencies per component, equal weights π_c = 1/C):

- GMM-RKS (random kitchen sinks): φ(x) = √(1/M) [cos(ω·x), sin(ω·x)], estimating the stationary kernel
  k(x − y) = Σ_c π_c exp(−½ Δᵀ diag(σ_c²) Δ) cos(μ_c·Δ), Δ = x − y;
- GMM-PRF (positive random features): φ(x) = √(1/M) exp(ω·x − |x|²/2), estimating
  k(x, y) = Σ_c π_c exp(μ_c·s + ½ sᵀ diag(σ_c²) s − |x|²/2 − |y|²/2), s = x + y, which is exp(x·y)
  (the softmax kernel) at μ = 0, σ = 1.

Layout: x ``[B, H, T, D]``; μ, log σ ``[H, C, D]``; ε ``[H, C, M/C, D]``.
"""

from __future__ import annotations

import math

import torch


def frequencies(mu: torch.Tensor, log_sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """ω ``[H, M, D]`` = μ_c + σ_c ⊙ ε for every component c and draw."""
    return (mu[:, :, None] + torch.exp(log_sigma)[:, :, None] * noise).flatten(1, 2)


def rks_features(x: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """√(1/M) [cos(ω·x), sin(ω·x)] ``[B, H, T, 2M]``."""
    proj = torch.einsum("bhtd,hmd->bhtm", x, omega.to(x.dtype))
    return torch.cat([torch.cos(proj), torch.sin(proj)], dim=-1) / math.sqrt(omega.shape[1])


def prf_features(x: torch.Tensor, omega: torch.Tensor, *, stabilise: bool = False) -> torch.Tensor:
    """√(1/M) exp(ω·x − |x|²/2) ``[B, H, T, M]``; ``stabilise`` (queries) subtracts each row's maximum
    instead of |x|²/2, a per-query constant that cancels in the normalised attention."""
    proj = torch.einsum("bhtd,hmd->bhtm", x, omega.to(x.dtype))
    if stabilise:
        proj = proj - proj.amax(dim=-1, keepdim=True).detach()
    else:
        proj = proj - 0.5 * x.square().sum(-1, keepdim=True)
    return torch.exp(proj) / math.sqrt(omega.shape[1])


def rks_kernel(x: torch.Tensor, y: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """The closed form the RKS features estimate, for vectors x, y ``[D]`` and one head's μ, log σ ``[C, D]``."""
    delta = x - y
    var = torch.exp(2 * log_sigma)
    return (torch.exp(-0.5 * (delta.square() * var).sum(-1)) * torch.cos(mu @ delta)).mean()


def prf_kernel(x: torch.Tensor, y: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """The closed form the PRF features estimate, for vectors x, y ``[D]`` and one head's μ, log σ ``[C, D]``."""
    s = x + y
    var = torch.exp(2 * log_sigma)
    return torch.exp(mu @ s + 0.5 * (s.square() * var).sum(-1) - 0.5 * (x @ x + y @ y)).mean()
