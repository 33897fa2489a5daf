"""The key/value cache: the generation state of every mixer that attends to its whole past."""

from __future__ import annotations

import torch

State = dict[str, torch.Tensor]


def empty_kv_cache(shape: tuple[int, ...], device, dtype: torch.dtype) -> State:
    """A key/value cache holding no tokens yet: ``shape`` has a time axis of size 0."""
    empty = torch.zeros(shape, device=device, dtype=dtype)
    return {"k": empty, "v": empty.clone()}


def extend_kv_cache(state: State, k: torch.Tensor, v: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The cached keys and values followed by the new ones along the time axis ``dim``."""
    return torch.cat([state["k"], k], dim=dim), torch.cat([state["v"], v], dim=dim)
