"""The state-space time step Δ: its log-uniform initialisation and its softplus parameterisation.

S4 (Gu et al. 2022, §C.3), S4D, S5, H3 and Mamba (Gu & Dao 2023, §3.6) draw Δ log-uniformly in
[dt_min, dt_max]; Mamba, Mamba-2 and Gated DeltaNet then learn it through softplus, with the bias set
to softplus⁻¹(Δ) so that the initial Δ is the drawn one.
"""

from __future__ import annotations

import math

import torch


def log_dt_init(n: int, dt_min: float = 1e-3, dt_max: float = 1e-1) -> torch.Tensor:
    """log Δ for ``n`` channels, uniform in [log dt_min, log dt_max]."""
    return torch.rand(n) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)


def inverse_softplus(x: torch.Tensor) -> torch.Tensor:
    """softplus⁻¹(x) = x + log(1 − e^(−x)), for x > 0."""
    return x + torch.log(-torch.expm1(-x))


def dt_bias_init(n: int, dt_min: float = 1e-3, dt_max: float = 1e-1) -> torch.Tensor:
    """The bias b of Δ = softplus(· + b) that makes the initial Δ log-uniform in [dt_min, dt_max]."""
    return inverse_softplus(torch.exp(log_dt_init(n, dt_min, dt_max)))
