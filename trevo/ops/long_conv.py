"""Long (sequence-length) convolutions: y_t = Σ_{s<=t} k_{t−s} u_s per channel, and its two-sided form.

Used by S4D's convolution mode, H3 and Hyena. Layout: ``u`` ``[B, D, T]`` (channels first, as the
FFT runs over the last axis); ``k`` ``[D, T_k]`` with T_k >= T (only its first T taps are used).

- ``causal_conv_quadratic``: the O(T²) Toeplitz product, the reference;
- ``fft_causal_conv``: zero-padded to 2T so the circular convolution is the linear one, O(T log T).
  A single FFT mixes every input into every output at rounding level (~1e-16), so the plain form is
  causal only up to rounding. With ``block`` it is *exactly* causal: outputs in block j take the
  inputs of earlier blocks through one FFT of the prefix (inputs from block j on set to zero) and
  the inputs of block j itself through a direct block×block Toeplitz product. Cost
  O((T/block)·T log T + T·block).
- ``fft_bidirectional_conv`` / ``bidirectional_conv_quadratic``: y_t = Σ_{s<=t} k_{t−s} u_s +
  Σ_{s>t} k'_{s−t−1} u_s, the forward and backward kernels of the S4 code base's bidirectional mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _toeplitz(k: torch.Tensor, n: int) -> torch.Tensor:
    """[D, n, n] lower-triangular Toeplitz matrices M[t, s] = k[t − s] (zero above the diagonal)."""
    idx = torch.arange(n, device=k.device)
    lag = idx[:, None] - idx[None, :]
    taps = k[:, :n][:, lag.clamp_min(0)]
    return torch.where(lag >= 0, taps, torch.zeros_like(taps))


def causal_conv_quadratic(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """y_t = Σ_{s<=t} k_{t−s} u_s by the O(T²) Toeplitz product (exactly causal)."""
    return torch.einsum("dts,bds->bdt", _toeplitz(k, u.shape[-1]), u)


def default_block(seq_len: int) -> int:
    """The block of the exactly causal FFT convolution when the mixer sets none: ⌈T/16⌉, at least 32."""
    return max(32, -(-seq_len // 16))


def fft_causal_conv(u: torch.Tensor, k: torch.Tensor, block: int | None = None) -> torch.Tensor:
    """y_t = Σ_{s<=t} k_{t−s} u_s by FFT; with ``block`` exactly causal (see the module docstring)."""
    T = u.shape[-1]
    k = k[..., :T]
    n = 2 * T
    if block is None or block >= T:
        if block is not None:  # one block: the direct product is exact and no slower
            return causal_conv_quadratic(u, k)
        return torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(k, n=n), n=n)[..., :T].to(u.dtype)
    nb = -(-T // block)
    pos = torch.arange(T, device=u.device)
    starts = torch.arange(1, nb, device=u.device) * block  # blocks 1.. see the inputs before them
    prefix = (pos[None, :] < starts[:, None])[:, None, None, :]  # [nb-1, 1, 1, T]
    masked = torch.where(prefix, u[None], torch.zeros_like(u[None]))  # [nb-1, B, D, T]
    spectrum = torch.fft.rfft(masked, n=n) * torch.fft.rfft(k, n=n)
    past = torch.fft.irfft(spectrum, n=n)[..., :T].to(u.dtype)  # [nb-1, B, D, T]
    pad = nb * block - T
    blocks = F.pad(u, (0, pad)).unflatten(-1, (nb, block))  # [B, D, nb, block]
    local = torch.einsum("dts,bdjs->bdjt", _toeplitz(k, block), blocks).flatten(-2)[..., :T]
    # Output block j (j >= 1) takes the past from the FFT whose prefix ends where block j starts.
    block_of = (pos // block).clamp_min(1) - 1
    picked = past.gather(0, block_of.expand(1, *past.shape[1:-1], T)).squeeze(0)
    return local + torch.where(pos >= block, picked, torch.zeros_like(picked))


def _backward_kernel(k_back: torch.Tensor) -> torch.Tensor:
    return F.pad(k_back, (1, 0))  # lag s − t >= 1 takes k'_{s−t−1}; lag 0 belongs to the forward kernel


def bidirectional_conv_quadratic(u: torch.Tensor, k: torch.Tensor, k_back: torch.Tensor) -> torch.Tensor:
    """y_t = Σ_{s<=t} k_{t−s} u_s + Σ_{s>t} k'_{s−t−1} u_s, by Toeplitz products (the reference)."""
    return causal_conv_quadratic(u, k) + causal_conv_quadratic(u.flip(-1), _backward_kernel(k_back)).flip(-1)


def fft_bidirectional_conv(u: torch.Tensor, k: torch.Tensor, k_back: torch.Tensor) -> torch.Tensor:
    """The two-sided convolution of ``bidirectional_conv_quadratic`` by FFT."""
    return fft_causal_conv(u, k) + fft_causal_conv(u.flip(-1), _backward_kernel(k_back)).flip(-1)
