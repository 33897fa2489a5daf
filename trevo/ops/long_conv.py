"""Long (sequence-length) convolutions: y_t = Σ_{s<=t} k_{t−s} u_s per channel, and its two-sided form.

Used by S4D's convolution mode, H3, Hyena, SGConv and the simple long convolution. Layout: ``u``
``[..., D, T]`` (channels first, as the FFT runs over the last axis); ``k`` ``[D, T_k]`` with
T_k >= T (only its first T taps are used).

- ``causal_conv_quadratic``: the O(T²) Toeplitz product, the reference;
- ``fft_causal_conv``: by FFT. Without ``block``, one FFT of length 2T (the circular convolution is
  then the linear one), O(T log T) — but it mixes every input into every output at rounding level
  (~1e-16), so it is causal only up to rounding. With ``block`` it is *exactly* causal and still
  O(T log² T) with a small constant (about twice one FFT convolution): the dyadic decomposition of
  "relaxed" (online) multiplication. Leaves of ``block`` samples are multiplied directly by their
  lower-triangular Toeplitz block; then at each level b = block, 2·block, … every left block of b
  samples is convolved by FFT (length 2b) with the taps 0..2b−1 and added to its right sibling.
  Each pair (s < t) of positions in different leaves is counted once, at the level where they sit
  in sibling blocks, and every FFT that reaches output t only reads inputs of a block that ends
  before t's block starts: changing u_s for s > t cannot change y_t by a single bit. The backward
  pass needs no causality and is two correlations by single FFTs (O(T log T), O(T·D) memory: the
  forward keeps nothing but u and k).
- ``fft_bidirectional_conv`` / ``bidirectional_conv_quadratic``: y_t = Σ_{s<=t} k_{t−s} u_s +
  Σ_{s>t} k'_{s−t−1} u_s, the forward and backward kernels of the S4 code base's bidirectional mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_BLOCK = 64  # leaf of the exact causal FFT: direct T·block work against about 2× one FFT above it


def _toeplitz(k: torch.Tensor, n: int) -> torch.Tensor:
    """[D, n, n] lower-triangular Toeplitz matrices M[t, s] = k[t − s] (zero above the diagonal)."""
    idx = torch.arange(n, device=k.device)
    lag = idx[:, None] - idx[None, :]
    taps = F.pad(k, (0, max(0, n - k.shape[-1])))[:, lag.clamp_min(0)]
    return torch.where(lag >= 0, taps, torch.zeros_like(taps))


def causal_conv_quadratic(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """y_t = Σ_{s<=t} k_{t−s} u_s by the O(T²) Toeplitz product (exactly causal)."""
    return torch.einsum("dts,...ds->...dt", _toeplitz(k, u.shape[-1]), u)


def default_block(seq_len: int) -> int:
    """The leaf of the exactly causal FFT convolution when the mixer sets none (see ``DEFAULT_BLOCK``)."""
    return DEFAULT_BLOCK


def _dyadic_causal_conv(u: torch.Tensor, k: torch.Tensor, block: int) -> torch.Tensor:
    """The exactly causal convolution of the module docstring (no autograd graph of its own)."""
    T = u.shape[-1]
    nb = -(-T // block)
    padded = block * (1 << (nb - 1).bit_length())  # leaves padded to a power of two
    up = F.pad(u, (0, padded - T))
    kp = F.pad(k[..., :T], (0, padded - T))
    leaves = up.unflatten(-1, (padded // block, block))
    y = torch.einsum("dts,...djs->...djt", _toeplitz(kp, block), leaves).flatten(-2).contiguous()
    b = block
    while b < T:
        pairs = -(-(T - b) // (2 * b))  # the pairs whose right block starts before T
        left = up[..., :pairs * 2 * b].unflatten(-1, (pairs, 2 * b))[..., :b]
        taps = torch.fft.rfft(kp[..., :2 * b], n=2 * b)[:, None, :]  # [D, 1, b + 1]
        into_right = torch.fft.irfft(torch.fft.rfft(left, n=2 * b) * taps, n=2 * b)[..., b:]
        y[..., :pairs * 2 * b].unflatten(-1, (pairs, 2, b))[..., 1, :] += into_right.to(y.dtype)
        b *= 2
    return y[..., :T]


def _correlate(a: torch.Tensor, b: torch.Tensor, T: int) -> torch.Tensor:
    """c_l = Σ_t a_t b_{t−l} for 0 <= l < T (one FFT of length 2T: no causality is needed here)."""
    n = 2 * T
    return torch.fft.irfft(torch.fft.rfft(a, n=n) * torch.fft.rfft(b, n=n).conj(), n=n)[..., :T]


class _ExactCausalConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u: torch.Tensor, k: torch.Tensor, block: int) -> torch.Tensor:
        ctx.save_for_backward(u, k)
        return _dyadic_causal_conv(u, k, block)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        u, k = ctx.saved_tensors
        T = u.shape[-1]
        # y_t = Σ_s k_{t−s} u_s: ∂/∂u_s = Σ_t g_t k_{t−s}, ∂/∂k_l = Σ_t g_t u_{t−l}.
        grad_u = _correlate(grad, k[..., :T], T).to(u.dtype) if ctx.needs_input_grad[0] else None
        grad_k = None
        if ctx.needs_input_grad[1]:
            g = _correlate(grad, u, T)
            g = g.sum(dim=tuple(range(g.dim() - k.dim()))) if g.dim() > k.dim() else g
            grad_k = F.pad(g, (0, k.shape[-1] - T)).to(k.dtype)
        return grad_u, grad_k, None


def fft_causal_conv(u: torch.Tensor, k: torch.Tensor, block: int | None = None) -> torch.Tensor:
    """y_t = Σ_{s<=t} k_{t−s} u_s by FFT; with ``block`` exactly causal (see the module docstring)."""
    T = u.shape[-1]
    if block is None:
        n = 2 * T
        return torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(k[..., :T], n=n), n=n)[..., :T].to(u.dtype)
    if block >= T:  # one leaf: the direct product is exact and no slower
        return causal_conv_quadratic(u, k[..., :T])
    return _ExactCausalConv.apply(u, k, block)


def _backward_kernel(k_back: torch.Tensor) -> torch.Tensor:
    return F.pad(k_back, (1, 0))  # lag s − t >= 1 takes k'_{s−t−1}; lag 0 belongs to the forward kernel


def bidirectional_conv_quadratic(u: torch.Tensor, k: torch.Tensor, k_back: torch.Tensor) -> torch.Tensor:
    """y_t = Σ_{s<=t} k_{t−s} u_s + Σ_{s>t} k'_{s−t−1} u_s, by Toeplitz products (the reference)."""
    return causal_conv_quadratic(u, k) + causal_conv_quadratic(u.flip(-1), _backward_kernel(k_back)).flip(-1)


def fft_bidirectional_conv(u: torch.Tensor, k: torch.Tensor, k_back: torch.Tensor) -> torch.Tensor:
    """The two-sided convolution of ``bidirectional_conv_quadratic`` by FFT."""
    return fft_causal_conv(u, k) + fft_causal_conv(u.flip(-1), _backward_kernel(k_back)).flip(-1)
