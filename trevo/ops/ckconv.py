"""Continuous-kernel convolutions: the kernel is a function of the relative position, sampled at as
many lags as the input has (CKConv, Romero et al. 2022, arXiv:2102.02611), optionally multiplied by a
learned Gaussian mask and cropped where the mask is negligible (FlexConv, Romero et al. 2022,
arXiv:2110.08059, §3), in one or more dimensions (CCNN, Knigge, Romero et al. 2023, arXiv:2206.03398).

This module holds the sampling grid, the mask and its crop, and the depthwise 2-D convolution in two
forms (1-D convolutions are ``trevo.ops.long_conv``'s):

- ``conv2d_fft``: zero-padded 2-D FFTs, O(HW log HW) per channel;
- ``conv2d_direct``: the direct sum y[i, j] = Σ_{a,b} k[i − a, j − b] u[a, b] (``F.conv2d``), O((HW)²).

A 2-D kernel ``[D, 2H−1, 2W−1]`` is indexed by offsets from −(H−1) to H−1 (centre at [H−1, W−1]).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MASK_THRESHOLD = 0.1  # FlexConv crops the kernel where the Gaussian mask falls below this


def relative_positions(extent: int, max_len: int, *, two_sided: bool, device=None,
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Lags 0 … extent−1 (or −(extent−1) … extent−1 when two-sided) divided by ``max_len``: the kernel
    net's input coordinate, so that the filter is one function whatever the sequence length."""
    lags = torch.arange(-(extent - 1) if two_sided else 0, extent, device=device, dtype=dtype)
    return lags / max_len


def gaussian_mask(positions: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """exp(−½ Σ_d (p_d/σ_d)²) with the mask centred at lag 0 (``positions`` ``[..., n_dims]``)."""
    return torch.exp(-0.5 * ((positions / sigma) ** 2).sum(-1))


def cropped_extent(sigma: float, max_len: int, limit: int) -> int:
    """How many lags (from 0) the mask keeps above ``MASK_THRESHOLD``: |p| <= σ·√(2 ln 10), at least 1
    and at most ``limit``. The kernel's size follows the learned σ (FlexConv §3.2); the crop itself
    carries no gradient, the mask inside it does."""
    reach = sigma * math.sqrt(-2 * math.log(MASK_THRESHOLD)) * max_len
    return max(1, min(limit, int(math.floor(reach)) + 1))


def conv2d_direct(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Depthwise 2-D convolution of ``u`` ``[B, D, H, W]`` with a centred kernel ``[D, 2R+1, 2S+1]``
    (R, S <= H−1, W−1), zero outside the grid."""
    R, S = (k.shape[-2] - 1) // 2, (k.shape[-1] - 1) // 2
    # conv2d correlates; flipping the kernel makes it the convolution Σ k[i − a] u[a].
    return F.conv2d(u, k.flip(-1, -2)[:, None], padding=(R, S), groups=u.shape[1])


def conv2d_fft(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The same convolution by 2-D FFTs, padded so that the circular convolution is the linear one."""
    H, W = u.shape[-2:]
    R, S = (k.shape[-2] - 1) // 2, (k.shape[-1] - 1) // 2
    size = (H + 2 * R, W + 2 * S)
    full = torch.fft.irfft2(torch.fft.rfft2(u, s=size) * torch.fft.rfft2(k, s=size), s=size)
    return full[..., R:R + H, S:S + W].to(u.dtype)
