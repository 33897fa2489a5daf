"""gMLP's spatial gating unit (Liu et al., "Pay Attention to MLPs", arXiv:2105.08050, eq. 2-3).

s(Z) = Z1 ⊙ f_{W,b}(Z2), f_{W,b}(Z2) = W Z2 + b with W ∈ R^{n×n} mixing positions and b ∈ R^n;
causally W is lower-triangular (section 4: "causal" gMLP for autoregressive language modelling).
Layout: z1, z2 ``[B, Tq, e]`` and ``[B, Tk, e]``; the queries are the last Tq of the Tk positions.
"""

from __future__ import annotations

import torch


def spatial_mixing_matrix(weight: torch.Tensor, start: int, stop: int, *, causal: bool) -> torch.Tensor:
    """The rows ``start:stop`` and columns ``:stop`` of W, lower-triangular when causal."""
    w = weight[start:stop, :stop]
    return w.tril(diagonal=start) if causal else w


def spatial_gating(z1: torch.Tensor, z2: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Z1 ⊙ (W Z2 + b) for the last Tq positions; ``weight`` ``[Tq, Tk]``, ``bias`` ``[Tq]``."""
    return z1 * (weight @ z2 + bias[:, None])
