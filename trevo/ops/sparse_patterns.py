"""Attention patterns as boolean masks ``[Tq, Tk]`` (True: query i may attend key j), built from the
absolute positions of the queries (``rows``) and keys (``cols``).

Sparse Transformer (Child et al., "Generating Long Sequences with Sparse Transformers",
arXiv:1904.10509, section 4.2), with stride / block length l:

- strided: A1 = {j : i − j < l}, A2 = {j : (i − j) mod l = 0};
- fixed:   A1 = {j : ⌊j/l⌋ = ⌊i/l⌋}, A2 = {j : j mod l ∈ {l − c, …, l − 1}} (c summary positions);

each restricted to j <= i when causal; the two heads' sets are merged (the paper's "merged head").
Bidirectionally the strided sets are symmetric: |i − j| < l, (i − j) mod l = 0.

Sliding-window (local) attention: 0 <= i − j < w causally, |i − j| < w bidirectionally.
"""

from __future__ import annotations

import torch


def _diff(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    return rows[:, None] - cols[None, :]


def _causal(mask: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, causal: bool) -> torch.Tensor:
    return mask & (_diff(rows, cols) >= 0) if causal else mask


def strided_mask(rows: torch.Tensor, cols: torch.Tensor, stride: int, *, causal: bool) -> torch.Tensor:
    """Strided pattern: A1 ∪ A2 with A1 = {i − j < l} (|i − j| < l bidirectionally), A2 = {(i − j) mod l = 0}."""
    d = _diff(rows, cols)
    a1 = d.abs() < stride
    a2 = d.remainder(stride) == 0
    return _causal(a1 | a2, rows, cols, causal)


def fixed_mask(rows: torch.Tensor, cols: torch.Tensor, stride: int, summary: int, *, causal: bool) -> torch.Tensor:
    """Fixed pattern: A1 ∪ A2 with A1 = {⌊j/l⌋ = ⌊i/l⌋}, A2 = {j mod l >= l − c}."""
    a1 = (rows[:, None] // stride) == (cols[None, :] // stride)
    a2 = (cols[None, :] % stride >= stride - summary).expand_as(a1)
    return _causal(a1 | a2, rows, cols, causal)


def sliding_window_mask(rows: torch.Tensor, cols: torch.Tensor, window: int, *, causal: bool) -> torch.Tensor:
    """Local attention: keys within ``window`` positions (the past ``window`` including i when causal)."""
    d = _diff(rows, cols)
    return (d >= 0) & (d < window) if causal else d.abs() < window
