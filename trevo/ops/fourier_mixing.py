"""Token mixing by Fourier transforms: FNet and the Global Filter Network.

FNet (Lee-Thorp et al., "FNet: Mixing Tokens with Fourier Transforms", arXiv:2105.03824, eq. 3):
y = Re(FFT_seq(FFT_hidden(x))), no parameters.

GFNet (Rao et al., "Global Filter Networks for Image Classification", arXiv:2107.00645, eq. 4-5):
y = IFFT(K ⊙ FFT(x)) with a learned complex filter K per frequency and channel (1-D over the
sequence, 2-D over an image's height and width). By the convolution theorem this is the circular
convolution of x with the kernel k = IFFT(K); the ``*_circular`` functions compute that directly.

Layout: x ``[B, T, D]`` (1-D) or ``[B, H, W, D]`` (2-D).
"""

from __future__ import annotations

import math

import torch


def fnet_fft(x: torch.Tensor) -> torch.Tensor:
    """Re(FFT over the sequence of FFT over the hidden dimension)."""
    return torch.fft.fft(torch.fft.fft(x, dim=-1), dim=-2).real.contiguous()


def dft_matrix(n: int, *, device=None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The complex DFT matrix F[k, t] = exp(−2πi·k·t/n)."""
    idx = torch.arange(n, device=device, dtype=dtype)
    angle = -2 * math.pi * torch.outer(idx, idx).remainder(n) / n
    return torch.polar(torch.ones_like(angle), angle)


def fnet_dft(x: torch.Tensor) -> torch.Tensor:
    """FNet with explicit DFT matrices: Re(F_T x F_D) (the O(T²·D + T·D²) reference)."""
    ft = dft_matrix(x.shape[-2], device=x.device, dtype=x.dtype)
    fd = dft_matrix(x.shape[-1], device=x.device, dtype=x.dtype)
    return (ft @ x.to(ft.dtype) @ fd.T).real.contiguous()


def global_filter_1d(x: torch.Tensor, filt: torch.Tensor) -> torch.Tensor:
    """irfft(rfft(x) ⊙ K) along the sequence; K ``[T//2 + 1, D]`` complex."""
    n = x.shape[-2]
    return torch.fft.irfft(torch.fft.rfft(x, dim=-2) * filt, n=n, dim=-2)


def global_filter_1d_circular(x: torch.Tensor, filt: torch.Tensor) -> torch.Tensor:
    """The same as a circular convolution: y_t = Σ_s k_s x_{(t−s) mod T}, k = irfft(K)."""
    n = x.shape[-2]
    k = torch.fft.irfft(filt, n=n, dim=-2)  # [T, D]
    t = torch.arange(n, device=x.device)
    circulant = k[(t[:, None] - t[None, :]).remainder(n)]  # [T, T, D]: C[t, s] = k[(t - s) mod T]
    return torch.einsum("tsd,bsd->btd", circulant, x)


def global_filter_2d(x: torch.Tensor, filt: torch.Tensor) -> torch.Tensor:
    """irfft2(rfft2(x) ⊙ K) over (H, W); x ``[B, H, W, D]``, K ``[H, W//2 + 1, D]`` complex."""
    h, w = x.shape[1:3]
    return torch.fft.irfft2(torch.fft.rfft2(x, dim=(1, 2)) * filt, s=(h, w), dim=(1, 2))


def global_filter_2d_circular(x: torch.Tensor, filt: torch.Tensor) -> torch.Tensor:
    """The same as a 2-D circular convolution: y[i, j] = Σ_{a,b} k[a, b] x[(i−a) mod H, (j−b) mod W]."""
    h, w = x.shape[1:3]
    k = torch.fft.irfft2(filt, s=(h, w), dim=(0, 1))  # [H, W, D]
    y = torch.zeros_like(x)
    for a in range(h):
        for b in range(w):
            y = y + k[a, b] * torch.roll(x, shifts=(a, b), dims=(1, 2))
    return y
