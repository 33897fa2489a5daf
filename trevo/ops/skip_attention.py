"""The parametric function of Skip-Attention (Venkataramanan et al., "Skip-Attention: Improving Vision
Transformers by Paying Less Attention", arXiv:2301.02240, eq. 7 and the authors' ``LeFF`` + ECA):

    Φ(Z) = ECA(FC₂(GELU(DwConv(GELU(FC₁(Z))))))

FC₁ widens the channels (``expand``·d), DwConv is a depthwise convolution over the positions (5×5 on
the patch grid in the paper), FC₂ narrows back, and ECA (efficient channel attention, Wang et al.,
arXiv:1910.03151) scales each channel by σ(conv₁ᴅ over channels of the tokens' mean). Z is the output of
an earlier layer's multi-head self-attention (after its output projection).

Causally (trevo's 1-D causal form; the paper is bidirectional) the convolution looks at the past
``conv_size`` positions only and ECA's mean over tokens is the running mean of the positions so far.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ECA_TAPS = 3  # the ECA kernel over channels of the authors' code


def eca_weights(z: torch.Tensor, mean: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``z`` ``[..., d]`` scaled by σ(kernel ⋆ mean) channel by channel; ``mean`` broadcasts against z."""
    lead = mean.shape[:-1]
    scores = F.conv1d(mean.reshape(-1, 1, mean.shape[-1]), kernel, padding=ECA_TAPS // 2).reshape(*lead, -1)
    return z * torch.sigmoid(scores)


def masked_mean(z: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
    """The mean of ``z`` ``[B, T, d]`` over the real positions ``[B, 1, d]``."""
    if padding_mask is None:
        return z.mean(dim=1, keepdim=True)
    real = padding_mask.to(z.dtype)[..., None]
    return (z * real).sum(dim=1, keepdim=True) / real.sum(dim=1, keepdim=True).clamp_min(1)


def running_mean(z: torch.Tensor, total: torch.Tensor, count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per position t the mean of the ``count`` earlier positions (their sum ``total`` ``[B, d]``) and
    z[:, :t+1]; returns (means ``[B, T, d]``, the new sum)."""
    sums = total[:, None] + z.cumsum(dim=1)
    seen = count + torch.arange(1, z.shape[1] + 1, device=z.device, dtype=z.dtype)
    return sums / seen[None, :, None], sums[:, -1]
