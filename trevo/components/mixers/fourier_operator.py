"""Fourier neural operators as token mixers: AFNO and the FNO layer, over a sequence or an image.

Both transform the whole sequence (or image) to frequency, so they are bidirectional only. Padded
positions are set to zero before the transform, so that the real positions' outputs do not depend on
what the padding held. The math lives in ``trevo.ops.fourier_operator``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import TokenMixer
from trevo.errors import IncompatibleError
from trevo.ops.fourier_operator import afno, fno_spectral_conv
from trevo.registry import Paper, register

AFNO_PAPER = Paper("Adaptive Fourier Neural Operators: Efficient Token Mixers for Transformers", "2111.13587", 2021)
FNO_PAPER = Paper("Fourier Neural Operator for Parametric Partial Differential Equations", "2010.08895", 2020)
_META = dict(category="MHA/FFT", family="fourier_operator", causal=False, bidirectional=True)


def _zero_padding(x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
    return x if padding_mask is None else x * padding_mask[..., None].to(x.dtype)


class _AFNO(TokenMixer):
    forms = ("fft", "quadratic")

    def __init__(self, d_model: int, *, causal: bool = False, n_blocks: int = 8, expand: int = 1,
                 shrink: float = 0.01, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        if n_blocks < 1 or d_model % n_blocks:
            raise IncompatibleError(f"{type(self).__name__}: n_blocks={n_blocks} must divide d_model={d_model}")
        if shrink < 0:
            raise IncompatibleError(f"{type(self).__name__}: shrink (the soft-shrinkage λ) must be >= 0, got {shrink}")
        block = d_model // n_blocks
        hidden = block * expand
        self.shrink = shrink
        scale = 0.02  # the paper's code: N(0, 0.02²) weights and biases, real and imaginary parts
        self.w1 = nn.Parameter(scale * torch.randn(2, n_blocks, block, hidden))
        self.b1 = nn.Parameter(scale * torch.randn(2, n_blocks, hidden))
        self.w2 = nn.Parameter(scale * torch.randn(2, n_blocks, hidden, block))
        self.b2 = nn.Parameter(scale * torch.randn(2, n_blocks, block))

    def _mix(self, x: torch.Tensor) -> torch.Tensor:
        return afno(x, self.w1, self.b1, self.w2, self.b2, shrink=self.shrink, form=self.form_for(x.shape[1]))


@register("mixer", "afno", paper=AFNO_PAPER, **_META, time="O(T·d·log T + T·d²/K)", memory="O(T·d)",
          test_options={"n_blocks": 4, "shrink": 0.001})
class AFNO1D(_AFNO):
    """AFNO over a sequence (Guibas et al. 2021, eq. 6-8, applied to the 1-D DFT): y = x +
    F⁻¹(S_λ(W₂ ReLU(W₁ F x + b₁) + b₂)), the complex MLP block-diagonal in ``n_blocks`` channel
    blocks and shared by every frequency; S_λ the soft shrinkage (λ = ``shrink``) of the real and
    imaginary parts. Forms: ``fft`` and ``quadratic`` (explicit DFT matrices, the reference)."""

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        return self._mix(_zero_padding(x, padding_mask))


@register("mixer", "afno_2d", paper=AFNO_PAPER, **_META, needs_2d=True,
          time="O(H·W·d·log(H·W) + H·W·d²/K)", memory="O(H·W·d)", test_options={"n_blocks": 4, "shrink": 0.001})
class AFNO2D(_AFNO):
    """AFNO token mixer over an image's (H, W) grid (Guibas et al. 2021, eq. 6-8): y = x +
    F⁻¹(S_λ(W₂ ReLU(W₁ F x + b₁) + b₂)) with the 2-D DFT F, the complex MLP block-diagonal in
    ``n_blocks`` channel blocks and shared by every frequency. Forms: ``fft``, ``quadratic``."""

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        H, W = self.grid(x, layout)
        return self._mix(_zero_padding(x, padding_mask).unflatten(1, (H, W))).flatten(1, 2)


def _spectral_weight(*shape: int, d_in: int, d_out: int) -> nn.Parameter:
    # The paper's code: scale · U(0, 1) real and imaginary parts, scale = 1 / (d_in · d_out).
    return nn.Parameter(torch.rand(*shape, d_in, d_out, 2) / (d_in * d_out))


class _FNO(TokenMixer):
    forms = ("fft", "quadratic")

    def _layer(self, x: torch.Tensor, weights: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """σ(W x + K x) (eq. 2), K the spectral convolution; σ = GELU as in the paper's code."""
        spectral = fno_spectral_conv(x, tuple(torch.view_as_complex(w) for w in weights), self.form_for(x.shape[1]))
        return F.gelu(self.pointwise(x) + spectral)


@register("mixer", "fno", paper=FNO_PAPER, **_META, time="O(T·d·log T + m·d²)", memory="O(m·d²) weights",
          test_options={"modes": 4})
class FNO1D(_FNO):
    """The Fourier layer of FNO over a sequence (Li et al. 2020, eq. 2 and 4): v' = σ(W v +
    F⁻¹(R · (F v))), R ∈ C^{m×d×d} a learned complex matrix for each of the ``modes`` lowest
    frequencies, every higher mode dropped; W a pointwise linear map. Forms: ``fft``, ``quadratic``."""

    def __init__(self, d_model: int, *, causal: bool = False, modes: int = 16, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        if modes < 1:
            raise IncompatibleError(f"fno: modes (Fourier modes kept) must be >= 1, got {modes}")
        self.weight = _spectral_weight(modes, d_in=d_model, d_out=d_model)
        self.pointwise = nn.Linear(d_model, d_model)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        return self._layer(_zero_padding(x, padding_mask), (self.weight,))


@register("mixer", "fno_2d", paper=FNO_PAPER, **_META, needs_2d=True,
          time="O(H·W·d·log(H·W) + m₁·m₂·d²)", memory="O(m₁·m₂·d²) weights", test_options={"modes": 2})
class FNO2D(_FNO):
    """The Fourier layer of FNO over an image (Li et al. 2020, eq. 2 and 4): v' = σ(W v + F⁻¹(R · F v))
    with the 2-D DFT, R learned for the row frequencies |u| < ``modes`` and the column frequencies
    f < ``modes`` (two weight tensors for u >= 0 and u < 0, as in the paper's code), the other modes
    dropped. Forms: ``fft`` and ``quadratic``."""

    def __init__(self, d_model: int, *, causal: bool = False, modes: int = 8, form: str = "auto") -> None:
        super().__init__(d_model, causal=causal, form=form)
        if modes < 1:
            raise IncompatibleError(f"fno_2d: modes (Fourier modes kept per axis) must be >= 1, got {modes}")
        self.weight_low = _spectral_weight(modes, modes, d_in=d_model, d_out=d_model)
        self.weight_high = _spectral_weight(modes, modes, d_in=d_model, d_out=d_model)
        self.pointwise = nn.Linear(d_model, d_model)

    def bidirectional_forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                              layout: tuple[int, ...] | None) -> torch.Tensor:
        H, W = self.grid(x, layout)
        img = _zero_padding(x, padding_mask).unflatten(1, (H, W))
        return self._layer(img, (self.weight_low, self.weight_high)).flatten(1, 2)
