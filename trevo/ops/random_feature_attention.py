"""Random feature attention (RFA) and LARA, its importance-sampled form.

RFA (Peng et al., "Random Feature Attention", arXiv:2103.02143, §2-3). With random Fourier features

    φ(x) = √(1/M) [sin(ω₁·x), …, sin(ω_M·x), cos(ω₁·x), …, cos(ω_M·x)],  ω_i ~ N(0, σ⁻² I),

φ(x)·φ(y) estimates the Gaussian kernel exp(−|x − y|²/(2σ²)) (Rahimi and Recht); with unit-norm
queries and keys that is the softmax kernel exp(x·y/σ²) up to a constant, so attention becomes
φ(q)ᵀ Σ φ(k) vᵀ / φ(q)·Σ φ(k). The causal gated variant (eq. 7) decays the sums with a learned gate,
S_t = g_t S_{t−1} + (1 − g_t) φ(k_t) v_tᵀ (and z_t likewise): the linear-recurrence engine with
log decay log g_t and keys scaled by 1 − g_t.

LARA (Zheng, Wang and Kong, "Linear Complexity Randomized Self-attention Mechanism",
arXiv:2204.04667, §3-4) estimates softmax attention itself by importance sampling. exp(q·k) =
E_{ω~N(0,I)}[ξ(q, ω) ξ(k, ω)] with ξ(x, ω) = exp(ω·x − |x|²/2); C proposals p_c = N(μ_c, I) centred
on landmarks (μ_c = q̄_c + k̄_c, the means of the c-th segment of queries and keys) give, with the
query-specific multiple-importance weights α_nc(ω) = r_nc p_c(ω) / Σ_c' r_nc' p_c'(ω) (which sum to 1
over c for every ω, so the estimate stays unbiased) and r_nc = softmax_c(q_n·μ_c),

    Σ_m exp(q_n·k_m) v_m ≈ (1/S) Σ_{c,s} [r_nc N(ω_cs; 0, I) / Σ_c' r_nc' p_c'(ω_cs)] ξ(q_n, ω_cs) Σ_m ξ(k_m, ω_cs) v_m,

ω_cs = μ_c + ε_cs, and the output is this over the same estimate with v = 1 (self-normalised). The
key sums Σ_m ξ(k_m, ω_cs) v_m are shared by all queries: O(T·C·S·d). Everything is computed in log
space. The choice of r_nc and μ_c is trevo's reading of §4. Layout: ``[B, H, T, D]``.
"""

from __future__ import annotations

import math

import torch

from trevo.ops.nystromformer import segment_means


def fourier_features(x: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """φ(x) ``[B, H, T, 2M]`` for x ``[B, H, T, D]`` and frequencies ω ``[H, M, D]``."""
    proj = torch.einsum("bhtd,hmd->bhtm", x, omega.to(x.dtype))
    return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1) / math.sqrt(omega.shape[1])


def _log_normal(x: torch.Tensor) -> torch.Tensor:
    """log N(x; 0, I) over the last axis."""
    return -0.5 * x.square().sum(-1) - 0.5 * x.shape[-1] * math.log(2 * math.pi)


def lara_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, noise: torch.Tensor, *,
                   key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The LARA estimate of softmax(q·kᵀ/√D) v (see the module docstring); ``noise`` ε ``[H, C, S, D]``."""
    D = q.shape[-1]
    qs, ks = q * D ** -0.25, k * D ** -0.25
    C = noise.shape[1]
    q_bar, valid = segment_means(qs, C, key_padding_mask)
    k_bar, _ = segment_means(ks, C, key_padding_mask)
    mu = q_bar + k_bar  # [B, H, C, D]
    omega = mu[:, :, :, None] + noise.to(q.dtype)[None]  # [B, H, C, S, D]
    hide = ~valid[:, None, None, :]  # empty segments are no proposal
    log_r = torch.log_softmax((qs @ mu.transpose(-1, -2)).masked_fill(hide, -math.inf), dim=-1)  # [B, H, T, C]
    # log p_c'(ω_cs) for every proposal c' ``[B, H, C, S, C']``
    log_p = _log_normal(omega[..., None, :] - mu[:, :, None, None, :, :])
    log_p = log_p.masked_fill(~valid[:, None, None, None, :], -math.inf)
    mix = torch.logsumexp(log_r[:, :, :, None, None, :] + log_p[:, :, None], dim=-1)  # [B, H, T, C, S]
    coef = log_r[..., None] + _log_normal(omega)[:, :, None] - mix
    coef = coef + torch.einsum("bhcsd,bhtd->bhtcs", omega, qs) - 0.5 * qs.square().sum(-1)[..., None, None]
    # Key side: log ξ(k_m, ω_cs), summed against v at a per-(c, s) scale.
    log_xi = torch.einsum("bhcsd,bhmd->bhcsm", omega, ks) - 0.5 * ks.square().sum(-1)[:, :, None, None, :]
    if key_padding_mask is not None:
        log_xi = log_xi.masked_fill(~key_padding_mask.bool()[:, None, None, None, :], -math.inf)
    top = log_xi.amax(dim=-1, keepdim=True)
    e = torch.exp(log_xi - top)
    kv, kz = e @ v[:, :, None], e.sum(-1)  # [B, H, C, S, Dv], [B, H, C, S]
    coef = (coef + top[..., 0][:, :, None]).masked_fill(hide[..., None], -math.inf)
    w = torch.exp(coef - coef.flatten(-2).amax(-1)[..., None, None])  # [B, H, T, C, S]
    num = torch.einsum("bhtcs,bhcsd->bhtd", w, kv)
    return num / torch.einsum("bhtcs,bhcs->bht", w, kz)[..., None]
