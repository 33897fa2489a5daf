"""Shared pieces of the mixers built on the linear-recurrence engine (``trevo.ops.linear_recurrence``,
``trevo.ops.delta_rule``): head reshapes, form selection, a short causal convolution with its
generation state, and rotary position phases. No component is registered here."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trevo.components.base import TokenMixer
from trevo.registry import IncompatibleError


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(batch, seq, H·D) -> [B, H, T, D], the engine's layout."""
    return x.unflatten(-1, (n_heads, -1)).transpose(1, 2)


def merge_heads(o: torch.Tensor) -> torch.Tensor:
    """[B, H, T, D] -> (batch, seq, H·D)."""
    return o.transpose(1, 2).flatten(2)


def check_heads(d: int, n_heads: int, what: str = "d_model") -> None:
    if d % n_heads:
        raise IncompatibleError(f"{what}={d} is not divisible by n_heads={n_heads}; choose n_heads dividing it")


class EngineMixer(TokenMixer):
    """A causal mixer whose forms are the engine's: ``auto`` is recurrent for a one-token step and
    chunk otherwise; ``forward`` on a causal mixer is ``prefill`` from the zero state."""

    forms = ("chunk", "parallel", "recurrent")

    def forward(self, x: torch.Tensor, *, padding_mask: torch.Tensor | None = None,
                layout: tuple[int, ...] | None = None) -> torch.Tensor:
        self.check_input(x)
        if self.causal:
            return self.prefill(x)[0]
        return self.bidirectional(x, padding_mask)

    def bidirectional(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        raise IncompatibleError(f"{type(self).__name__} is causal only")


class ShortConv(nn.Module):
    """Depthwise causal convolution over time (kernel ``k``, as in H3, Mamba, DeltaNet) whose
    generation state is the last ``k - 1`` inputs."""

    def __init__(self, channels: int, kernel: int = 4) -> None:
        super().__init__()
        self.kernel = kernel
        self.weight = nn.Parameter(torch.randn(channels, 1, kernel) / kernel ** 0.5)
        self.bias = nn.Parameter(torch.zeros(channels))

    def init_state(self, batch: int, device, dtype) -> torch.Tensor:
        return torch.zeros(batch, self.kernel - 1, self.weight.shape[0], device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, cache: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if cache is None:
            cache = self.init_state(x.shape[0], x.device, x.dtype)
        xx = torch.cat([cache.to(x.dtype), x], dim=1)
        y = F.conv1d(xx.transpose(1, 2), self.weight, self.bias, groups=self.weight.shape[0])
        return y.transpose(1, 2), xx[:, xx.shape[1] - (self.kernel - 1):]


def rotate(x: torch.Tensor, offset: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotary phases e^{i n θ} on consecutive pairs of the last dim of x ``[B, H, T, D]`` (D even),
    positions n = offset + 0..T-1: RetNet's Θ_n (and RoPE)."""
    D, T = x.shape[-1], x.shape[-2]
    theta = base ** (-torch.arange(0, D, 2, device=x.device, dtype=x.dtype) / D)
    n = offset.to(x.dtype) + torch.arange(T, device=x.device, dtype=x.dtype)
    ang = n[:, None] * theta[None, :]
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
