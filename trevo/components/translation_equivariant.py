"""Translation-equivariant relative positions for kernelizable attention (Horn et al., "Translational
Equivariance in Kernelizable Attention", arXiv:2102.07680, strategy 1).

The paper appends sinusoidal features p_i = [sin ω_s i, cos ω_s i]_s (learned ω_s) to the keys as they are
and to the queries through a constrained projection, one block M = [[α, β], [−β, α]] per frequency and
head (a scaled rotation), so that the positional part of the score is

    p_iᵀ M p_j = Σ_s α_s cos(ω_s (i − j)) + β_s sin(ω_s (i − j)) = b_{i−j},

a function of i − j only: shifting every query and key position together leaves the scores unchanged.
The kernel of the concatenated query and key factorises, exp(qᵢ·kⱼ + b_{i−j}) = exp(qᵢ·kⱼ) · c_{i−j} with
c = exp(b), so trevo computes the content part with the attention's random features and the positional part
exactly, as the Toeplitz weights of ``trevo.ops.kernelized_rpe`` (Luo et al. 2021's FFT form). The paper
feeds both parts to the random features, equal to this in expectation but translation-equivariant only in
expectation; here it is exact for every draw. The scores' 1/√d is folded into α and β.
"""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.positions import RelativePosition
from trevo.registry import Paper, register


@register("position", "translation_equivariant", category="Pe", family="translation_equivariant",
          applies="relative",
          paper=Paper("Translational Equivariance in Kernelizable Attention", "2102.07680", 2021))
class TranslationEquivariantPosition(RelativePosition):
    """b_{i−j} = Σ_s α_{h,s} cos(ω_s (i − j)) + β_{h,s} sin(ω_s (i − j)) per head h (Horn et al. 2021, §3.1,
    strategy 1: sinusoidal key features, query features through constrained 2 × 2 blocks), with
    ``n_scales`` learned frequencies starting at base^(−s/n_scales) (the paper's learnable sinusoid
    encoding) and α, β ~ N(0, 1/head_dim). Kernelized attention multiplies its weights by exp(b_{i−j})
    (``lag_bias``); ``bias`` gives the same as an ``[H, Tq, Tk]`` score bias. The mixer calls
    ``attach(n_heads=, head_dim=, causal=)`` once."""

    def __init__(self, d_model: int, n_scales: int = 4, base: float = 10000.0) -> None:
        super().__init__()
        self.n_scales = n_scales
        self.frequency = nn.Parameter(base ** (-torch.arange(n_scales, dtype=torch.float64) / n_scales)
                                      .to(torch.get_default_dtype()))

    def attach(self, *, n_heads: int, head_dim: int, causal: bool) -> None:
        self.alpha = nn.Parameter(torch.randn(n_heads, self.n_scales) * head_dim ** -0.5)
        self.beta = nn.Parameter(torch.randn(n_heads, self.n_scales) * head_dim ** -0.5)

    def _of_lags(self, lags: torch.Tensor) -> torch.Tensor:
        """b at the integer ``lags`` (any shape), ``[H, *lags.shape]``."""
        angle = lags.to(self.frequency.dtype)[..., None] * self.frequency  # [..., S]
        return torch.einsum("...s,hs->h...", angle.cos(), self.alpha) + torch.einsum("...s,hs->h...", angle.sin(),
                                                                                      self.beta)

    def lag_bias(self, n_keys: int) -> tuple[torch.Tensor, torch.Tensor]:
        """b at lags 0, 1, …, n_keys − 1 (``[H, n_keys]``) and at lags −1, −2, …, −(n_keys − 1)
        (``[H, n_keys − 1]``): the layout of ``kernelized_rpe``'s ``c_causal`` and ``c_back``."""
        lags = torch.arange(n_keys, device=self.frequency.device)
        return self._of_lags(lags), self._of_lags(-lags[1:])

    def bias(self, n_heads: int, tq: int, tk: int, *, device: torch.device | None = None) -> torch.Tensor:
        """``[H, Tq, Tk]`` with the queries at the last Tq of Tk positions."""
        i = torch.arange(tk - tq, tk, device=device)[:, None]
        return self._of_lags(i - torch.arange(tk, device=device)[None, :])
