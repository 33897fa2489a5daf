"""The key/value cache (trevo.components.kv_cache): it starts empty and each extension appends along
the time axis."""

from __future__ import annotations

import torch

from trevo.components.kv_cache import empty_kv_cache, extend_kv_cache


def test_empty_then_extended_cache_holds_the_tokens_in_order():
    state = empty_kv_cache((2, 3, 0, 4), "cpu", torch.float64)
    assert state["k"].shape == state["v"].shape == (2, 3, 0, 4) and state["k"] is not state["v"]
    k1, v1 = torch.randn(2, 3, 2, 4, dtype=torch.float64), torch.randn(2, 3, 2, 4, dtype=torch.float64)
    k, v = extend_kv_cache(state, k1, v1, dim=2)
    k2, v2 = torch.randn(2, 3, 1, 4, dtype=torch.float64), torch.randn(2, 3, 1, 4, dtype=torch.float64)
    k, v = extend_kv_cache({"k": k, "v": v}, k2, v2, dim=2)
    assert torch.equal(k, torch.cat([k1, k2], dim=2)) and torch.equal(v, torch.cat([v1, v2], dim=2))
