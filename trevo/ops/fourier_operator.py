"""Fourier neural operators as token mixers: the FNO spectral convolution and AFNO's frequency MLP.

- FNO (Li et al., "Fourier Neural Operator for Parametric Partial Differential Equations",
  arXiv:2010.08895, eq. 4-5): (K v)(x) = F⁻¹(R · F v)(x), with R ∈ C^{d×d} a learned matrix per kept
  Fourier mode and every mode above the ``modes`` lowest set to zero ("truncated modes").
- AFNO (Guibas et al., "Adaptive Fourier Neural Operators: Efficient Token Mixers for Transformers",
  arXiv:2111.13587, eq. 6-8): every frequency's channels go through the same block-diagonal complex
  two-layer MLP, W₂ σ(W₁ z + b₁) + b₂ (K blocks of d/K channels, σ = ReLU on the real and imaginary
  parts), then the soft shrinkage S_λ(z) = sign(z)·max(|z| − λ, 0) of the real and imaginary parts
  sparsifies the tokens in frequency.

Transforms are orthonormal real DFTs over the sequence axis (``[B, T, D]``) or the image axes
(``[B, H, W, D]``): ``fft`` uses torch.fft (rfft/irfft, rfft2/irfft2); ``quadratic`` multiplies by
the explicit DFT matrices (the reference). The inverse follows irfft's convention: the imaginary
parts of the zero (and, for even sizes, the Nyquist) frequency of the last axis are dropped.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

FORMS = ("fft", "quadratic")


def _complex(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def _dft(n: int, kept: int, dtype: torch.dtype, device) -> torch.Tensor:
    """``[kept, n]``: e^(−2πi f t / n) / √n for the first ``kept`` frequencies f."""
    f = torch.arange(kept, device=device, dtype=torch.float64)[:, None]
    t = torch.arange(n, device=device, dtype=torch.float64)[None, :]
    return (torch.exp(-2j * math.pi * f * t / n) / math.sqrt(n)).to(_complex(dtype))


def _half_weights(n: int, dtype: torch.dtype, device) -> torch.Tensor:
    """Multiplicity of each rfft frequency in the inverse: 1 for 0 (and n/2 when n is even), else 2."""
    c = torch.full((n // 2 + 1,), 2.0, dtype=dtype, device=device)
    c[0] = 1.0
    if n % 2 == 0:
        c[-1] = 1.0
    return c


def spectrum_1d(x: torch.Tensor, form: str) -> torch.Tensor:
    """The orthonormal rfft of ``x`` ``[B, T, D]`` over T: ``[B, T//2 + 1, D]`` complex."""
    if form == "fft":
        return torch.fft.rfft(x, dim=1, norm="ortho")
    T = x.shape[1]
    return torch.einsum("ft,btd->bfd", _dft(T, T // 2 + 1, x.dtype, x.device), x.to(_complex(x.dtype)))


def inverse_1d(z: torch.Tensor, n: int, form: str) -> torch.Tensor:
    """The orthonormal irfft of ``z`` ``[B, n//2 + 1, D]`` back to ``[B, n, D]``."""
    if form == "fft":
        return torch.fft.irfft(z, n=n, dim=1, norm="ortho")
    real = z.real.dtype
    basis = _dft(n, n // 2 + 1, real, z.device).conj() * _half_weights(n, real, z.device)[:, None]
    return torch.einsum("ft,bfd->btd", basis, z).real


def spectrum_2d(x: torch.Tensor, form: str) -> torch.Tensor:
    """The orthonormal rfft2 of ``x`` ``[B, H, W, D]`` over (H, W): ``[B, H, W//2 + 1, D]``."""
    if form == "fft":
        return torch.fft.rfft2(x, dim=(1, 2), norm="ortho")
    H, W = x.shape[1:3]
    eh, ew = _dft(H, H, x.dtype, x.device), _dft(W, W // 2 + 1, x.dtype, x.device)
    return torch.einsum("uh,fw,bhwd->bufd", eh, ew, x.to(_complex(x.dtype)))


def inverse_2d(z: torch.Tensor, size: tuple[int, int], form: str) -> torch.Tensor:
    """The orthonormal irfft2 of ``z`` ``[B, H, W//2 + 1, D]`` back to ``[B, H, W, D]``."""
    if form == "fft":
        return torch.fft.irfft2(z, s=size, dim=(1, 2), norm="ortho")
    H, W = size
    real = z.real.dtype
    eh = _dft(H, H, real, z.device).conj()
    ew = _dft(W, W // 2 + 1, real, z.device).conj() * _half_weights(W, real, z.device)[:, None]
    return torch.einsum("uh,fw,bufd->bhwd", eh, ew, z).real


def _apply(x: torch.Tensor, form: str, fn) -> torch.Tensor:
    """``fn`` applied to the spectrum of ``x`` (``[B, T, D]`` or ``[B, H, W, D]``), transformed back."""
    if x.dim() == 3:
        return inverse_1d(fn(spectrum_1d(x, form)), x.shape[1], form)
    return inverse_2d(fn(spectrum_2d(x, form)), tuple(x.shape[1:3]), form)


# AFNO

def afno_frequency_mlp(z: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor,
                       shrink: float) -> torch.Tensor:
    """S_λ(W₂ σ(W₁ z + b₁) + b₂) on every frequency of ``z`` ``[..., D]`` (complex), block-diagonal.

    Weights are real/imaginary pairs: w1 ``[2, K, D/K, E]``, b1 ``[2, K, E]``, w2 ``[2, K, E, D/K]``,
    b2 ``[2, K, D/K]``. σ = ReLU on the real and imaginary parts separately (the paper's code)."""
    K = w1.shape[1]
    zb = z.unflatten(-1, (K, -1))  # [..., K, D/K]
    W1, B1 = torch.complex(w1[0], w1[1]).to(z.dtype), torch.complex(b1[0], b1[1]).to(z.dtype)
    W2, B2 = torch.complex(w2[0], w2[1]).to(z.dtype), torch.complex(b2[0], b2[1]).to(z.dtype)
    h = torch.einsum("...ki,kie->...ke", zb, W1) + B1
    h = torch.complex(F.relu(h.real), F.relu(h.imag))
    o = torch.einsum("...ke,kei->...ki", h, W2) + B2
    o = torch.complex(F.softshrink(o.real, shrink), F.softshrink(o.imag, shrink)) if shrink > 0 else o
    return o.flatten(-2)


def afno(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor, *,
         shrink: float, form: str = "fft") -> torch.Tensor:
    """AFNO token mixing of ``x`` ``[B, T, D]`` or ``[B, H, W, D]``: F⁻¹(S_λ(MLP(F x))) + x (the
    paper's filter adds its input back, its ``bias``)."""
    out = _apply(x, form, lambda z: afno_frequency_mlp(z, w1, b1, w2, b2, shrink))
    return out.to(x.dtype).contiguous() + x  # irfft returns a strided view; callers expect row-major


# FNO

def _truncate_1d(z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    kept = min(weight.shape[0], z.shape[1])
    out = torch.zeros(*z.shape[:-1], weight.shape[-1], dtype=z.dtype, device=z.device)
    out[:, :kept] = torch.einsum("bfi,fio->bfo", z[:, :kept], weight[:kept].to(z.dtype))
    return out


def _truncate_2d(z: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Modes (u, f) with f < m₂ and u < m₁ (weights ``low``) or u >= H − m₁ (``high``); others zero.
    m₁ is at most H // 2 so the two row sets never overlap."""
    H, Wf = z.shape[1:3]
    m1, m2 = min(low.shape[0], H // 2), min(low.shape[1], Wf)
    out = torch.zeros(*z.shape[:-1], low.shape[-1], dtype=z.dtype, device=z.device)
    if m1 == 0:  # a single row: only the zero row frequency exists
        out[:, :1, :m2] = torch.einsum("bufi,ufio->bufo", z[:, :1, :m2], low[:1, :m2].to(z.dtype))
        return out
    out[:, :m1, :m2] = torch.einsum("bufi,ufio->bufo", z[:, :m1, :m2], low[:m1, :m2].to(z.dtype))
    out[:, H - m1:, :m2] = torch.einsum("bufi,ufio->bufo", z[:, H - m1:, :m2], high[-m1:, :m2].to(z.dtype))
    return out


def fno_spectral_conv(x: torch.Tensor, weights: tuple[torch.Tensor, ...], form: str = "fft") -> torch.Tensor:
    """(K x) = F⁻¹(R · F x) with R zero above the kept modes. 1-D: x ``[B, T, D]`` and one weight
    ``[m, D, D']`` (complex); 2-D: x ``[B, H, W, D]`` and two weights ``[m₁, m₂, D, D']`` for the low
    and the high (negative) row frequencies, as in the paper's code."""
    if x.dim() == 3:
        out = _apply(x, form, lambda z: _truncate_1d(z, weights[0]))
    else:
        out = _apply(x, form, lambda z: _truncate_2d(z, weights[0], weights[1]))
    return out.to(x.dtype).contiguous()  # irfft returns a strided view; callers expect row-major
