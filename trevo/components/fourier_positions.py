"""Fourier-feature position encoding for N-D inputs (Jaegle et al., "Perceiver: General Perception
with Iterative Attention", arXiv:2103.03206, §2 "Position encodings").

Each position is a point x ∈ [−1, 1]^d of its grid (one coordinate per axis, the grid's first and last
index mapped to −1 and +1). Per axis, K frequencies f_k are spaced linearly from 1 to the Nyquist
frequency μ/2 of a chosen resolution μ, and the features are

    [x_d, sin(π f_1 x_d) … sin(π f_K x_d), cos(π f_1 x_d) … cos(π f_K x_d)]   for d = 1 … D,

d(2K + 1) numbers in all. The paper **concatenates** them to the input features (so that position and
content stay separable); adding a learned projection of them is the option.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from trevo.components.positions import AbsolutePosition
from trevo.errors import IncompatibleError, TrevoError
from trevo.registry import Paper, register

COMBINES = ("concat", "add")


def grid_coordinates(layout: Sequence[int], *, dtype: torch.dtype = torch.float64,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """``[prod(layout), len(layout)]``: the row-major grid's points, each axis scaled to [−1, 1]."""
    axes = [torch.linspace(-1.0, 1.0, n, dtype=dtype, device=device) if n > 1
            else torch.zeros(1, dtype=dtype, device=device) for n in layout]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(layout))


def fourier_bands(n_bands: int, max_resolution: float, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """K frequencies linearly spaced from 1 to the Nyquist frequency μ/2 of resolution μ."""
    return torch.linspace(1.0, max_resolution / 2, n_bands, dtype=dtype)


def fourier_features(coords: torch.Tensor, n_bands: int, max_resolution: Sequence[float]) -> torch.Tensor:
    """``coords [..., D]`` in [−1, 1] → ``[..., D(2K+1)]``: per axis the raw coordinate, K sines, K cosines.

    ``max_resolution`` holds μ per axis (the paper uses each axis's grid size)."""
    if coords.shape[-1] != len(max_resolution):
        raise TrevoError(f"{coords.shape[-1]}-D positions need one resolution per axis, got {list(max_resolution)}")
    feats = []
    for axis, mu in enumerate(max_resolution):
        x = coords[..., axis:axis + 1]
        angles = math.pi * x * fourier_bands(n_bands, mu, dtype=coords.dtype).to(coords.device)
        feats += [x, torch.sin(angles), torch.cos(angles)]
    return torch.cat(feats, dim=-1)


@register("position", "fourier", category="Pe", family="fourier_positions", applies="absolute",
          fixed_length=True, paper=Paper("Perceiver: General Perception with Iterative Attention", "2103.03206",
                                         2021))
class FourierPosition(AbsolutePosition):
    """Fourier features of N-D positions (Perceiver §2): [x, sin(π f_k x), cos(π f_k x)] per axis, with
    f_k = linspace(1, μ/2, K); concatenated to the input (``combine="concat"``) or projected and added.

    The flat position p is read as a row-major index into ``layout`` (default ``(max_len,)``), so
    1-D text and (H, W) images share one component. ``max_resolution`` (μ, per axis or one number)
    defaults to the grid size of each axis."""

    def __init__(self, d_model: int, max_len: int = 1024, layout: Sequence[int] | None = None,
                 n_bands: int = 16, max_resolution: float | Sequence[float] | None = None,
                 combine: str = "concat") -> None:
        super().__init__()
        if combine not in COMBINES:
            raise IncompatibleError(f"fourier position: combine must be one of {', '.join(COMBINES)}, "
                                    f"got {combine!r}")
        self.layout = tuple(layout) if layout else (max_len,)
        if isinstance(max_resolution, (int, float)):
            max_resolution = [max_resolution] * len(self.layout)
        self.max_resolution = tuple(float(m) for m in (max_resolution or self.layout))
        if len(self.max_resolution) != len(self.layout):
            raise IncompatibleError(f"fourier position: max_resolution has {len(self.max_resolution)} axes, "
                                    f"the layout {self.layout} has {len(self.layout)}")
        self.n_bands, self.combine_mode, self.d_model = n_bands, combine, d_model
        self.n_positions = math.prod(self.layout)
        self.width = len(self.layout) * (2 * n_bands + 1)
        # Computed once in float64; the model's dtype is applied at use.
        self.register_buffer("table", fourier_features(grid_coordinates(self.layout), n_bands,
                                                       self.max_resolution), persistent=False)
        self.proj = nn.Linear(self.width, d_model) if combine == "add" else None

    def features(self, positions: torch.Tensor) -> torch.Tensor:
        """``[T, D(2K+1)]``: the raw Fourier features of the flat positions."""
        if positions.numel() and int(positions.max()) >= self.n_positions:
            raise TrevoError(f"position {int(positions.max())} lies outside the fourier position grid "
                             f"{self.layout} ({self.n_positions} positions); raise model.max_len or the layout")
        return self.table[positions]

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """``[T, d_model]``: the vector to add to the embeddings (``combine="add"`` only)."""
        if self.proj is None:
            raise IncompatibleError("fourier position with combine='concat' widens the input, which a model "
                                    "that adds positions cannot use; set the position's combine=add")
        return self.proj(self.features(positions).to(self.proj.weight.dtype))

    def out_width(self, in_width: int) -> int:
        """The width of ``combine``'s output for an input of ``in_width`` features."""
        return in_width + self.width if self.proj is None else in_width

    def combine(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``x [B, T, C]`` → ``[B, T, C + D(2K+1)]`` (concat) or ``[B, T, C]`` (add)."""
        if self.proj is not None:
            return x + self(positions).to(x.dtype)
        feats = self.features(positions).to(x.dtype)
        return torch.cat([x, feats.expand(x.shape[0], -1, -1)], dim=-1)
