"""Explicitly parameterised long-convolution kernels (the convolutions themselves are in
``trevo.ops.long_conv``).

SGConv (Li et al., "What Makes Convolutional Models Great on Long Sequence Modeling?",
arXiv:2210.09298, §3.1): N = 1 + ⌈log₂(L / d)⌉ learned sub-kernels w_i of d taps each,

    k = (1/Z) [k_0, k_1, …, k_{N−1}],   k_i = α^i · Upsample_{2^{max(i−1, 0)}}(w_i),

concatenated along the lag axis, so that sub-kernel i covers lags of scale 2^i·d with a weight that
decays geometrically (α < 1) with the distance; Upsample repeats each tap (nearest neighbour) and
Z is the per-channel norm of the kernel at initialisation.

Simple long convolution (Fu et al., "Simple Hardware-Efficient Long Convolutions for Sequence
Modeling", arXiv:2302.06646, §3.1): a kernel of L taps learned directly, regularised in the forward
pass by Squash, k ← sign(k)·max(|k| − λ, 0) (soft threshold: sparse kernels), and Smooth, an average
pool of width p along the lags (k ← AvgPool_p(k)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def sgconv_num_scales(max_len: int, kernel_dim: int) -> int:
    """N = 1 + ⌈log₂(max_len / d)⌉ sub-kernels: enough for the concatenation to cover max_len lags."""
    return 1 + max(0, math.ceil(math.log2(max_len / kernel_dim)))


def sgconv_kernel(weights: list[torch.Tensor], decay: float, norm: torch.Tensor | None = None) -> torch.Tensor:
    """[k_0, …, k_{N−1}] / Z from sub-kernels ``weights[i]`` ``[..., d]``; length d·2^{N−1}."""
    parts = [decay ** i * w.repeat_interleave(2 ** max(i - 1, 0), dim=-1) for i, w in enumerate(weights)]
    k = torch.cat(parts, dim=-1)
    return k if norm is None else k / norm


def squash(k: torch.Tensor, lam: float) -> torch.Tensor:
    """Soft threshold sign(k)·max(|k| − λ, 0)."""
    return torch.sign(k) * F.relu(k.abs() - lam)


def smooth(k: torch.Tensor, width: int) -> torch.Tensor:
    """Average over ``width`` neighbouring taps (odd width, centred; the borders average what they hold)."""
    if width <= 1:
        return k
    flat = k.reshape(-1, 1, k.shape[-1])
    out = F.avg_pool1d(flat, width, 1, width // 2, count_include_pad=False)
    return out.reshape(k.shape)


def simple_long_conv_kernel(k: torch.Tensor, lam: float, width: int) -> torch.Tensor:
    """Smooth(Squash(k)): the regularised kernel of the simple long convolution."""
    return smooth(squash(k, lam), width)


def fit_length(k: torch.Tensor, length: int) -> torch.Tensor:
    """The kernel cropped, or zero-padded past its last tap, to ``length`` lags."""
    return k[..., :length] if k.shape[-1] >= length else F.pad(k, (0, length - k.shape[-1]))
