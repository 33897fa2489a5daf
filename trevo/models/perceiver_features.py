"""The Perceiver's input adapter for continuous input elements (point clouds, table cells, pixel patches).

Perceiver (Jaegle et al., arXiv:2103.03206, §4.3, ModelNet40) feeds a point cloud as its raw (x, y, z)
coordinates concatenated with Fourier features of those coordinates (§2, the encoding of
``trevo.components.fourier_positions`` evaluated at the points themselves rather than at grid
positions); Perceiver IO (arXiv:2107.14795, §4.2, optical flow) feeds each pixel's 3 × 3 patch of both
frames concatenated with Fourier features of its grid position. One adapter serves both:

    x_m = [W f_m ; fourier(f_m[:c]) ; pos(m)]

``f_m`` the element's ``F`` features, ``c`` of them coordinates in [−1, 1] (``info.coordinate_dims``),
``pos(m)`` the model's position component at the element's index (Fourier features of a grid, learned
column embeddings of a table …, or none). A task whose elements are a set (``info.unordered``) refuses
any index position: the output then does not depend on the elements' order.
"""

from __future__ import annotations

import torch
from torch import nn

from trevo.components.fourier_positions import fourier_features
from trevo.config import ComponentSpec
from trevo.errors import IncompatibleError, TrevoError
from trevo.models.perceiver import PositionFeatures


class FeatureAdapter(nn.Module):
    """Continuous elements ``[B, M, F]`` → ``[B, M, C]``: a linear embedding of the features, Fourier
    features of their first ``coordinate_dims`` (coordinates in [−1, 1]) and the index position."""

    def __init__(self, n_features: int, embed_dim: int, spec: ComponentSpec, *, coordinate_dims: int,
                 coordinate_bands: int, coordinate_resolution: float, unordered: bool, mode: str, pos_dim: int,
                 max_len: int, layout: tuple[int, ...]) -> None:
        super().__init__()
        if unordered and spec.name != "none":
            raise IncompatibleError(f"this task's input elements are a set (their order carries nothing) but "
                                    f"model.position={spec.name!r} gives each index its own features, which would "
                                    f"make the output depend on the order; set model.position=none")
        if not 0 <= coordinate_dims <= n_features:
            raise TrevoError(f"coordinate_dims={coordinate_dims} must lie in [0, {n_features}] (the features)")
        self.n_features, self.coordinate_dims = n_features, coordinate_dims
        self.bands, self.resolution = coordinate_bands, (float(coordinate_resolution),) * coordinate_dims
        self.embed = nn.Linear(n_features, embed_dim)
        fourier = coordinate_dims * (2 * coordinate_bands + 1) if coordinate_dims else 0
        self.position = PositionFeatures(spec, mode=mode, width=embed_dim + fourier, pos_dim=pos_dim,
                                         max_len=max_len, layout=layout)
        self.width = self.position.out_width

    def check(self, features: torch.Tensor) -> None:
        if features.dim() != 3 or features.shape[-1] != self.n_features or not features.is_floating_point():
            raise TrevoError(f"this model reads continuous input elements [batch, elements, {self.n_features}] "
                             f"(floating point), got {tuple(features.shape)} of {features.dtype}")

    def forward(self, features: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        features = features.to(dtype)
        parts = [self.embed(features)]
        if self.coordinate_dims:
            parts.append(fourier_features(features[..., :self.coordinate_dims], self.bands, self.resolution))
        x = torch.cat(parts, dim=-1)
        return self.position(x, torch.arange(features.shape[1], device=features.device))
