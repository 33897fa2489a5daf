"""Product-key memory: the product-key search equals the brute-force top-k over all n² product keys, and
the layer equals a read of the memory written out over every slot."""

from __future__ import annotations

import pytest
import torch

from trevo.components.product_key_memory import product_key_topk
from trevo.errors import IncompatibleError
from trevo.registry import create


@pytest.mark.parametrize("n,k", [(7, 1), (16, 4), (32, 8), (9, 9)])
def test_product_key_search_equals_the_brute_force_top_k(n, k):
    generator = torch.Generator().manual_seed(n * k)
    s1, s2 = torch.randn(2, 3, 5, n, generator=generator, dtype=torch.float64)
    scores, slots = product_key_topk(s1, s2, k)
    every = (s1[..., :, None] + s2[..., None, :]).flatten(-2)  # all n² sums, slot a·n + b
    expected_scores, expected_slots = every.topk(k, dim=-1)
    torch.testing.assert_close(scores, expected_scores, rtol=0, atol=0)
    assert torch.equal(slots, expected_slots)
    torch.testing.assert_close(every.gather(-1, slots), scores, rtol=0, atol=0)


def test_the_layer_reads_the_memory_as_written_out_over_every_slot():
    torch.manual_seed(0)
    pkm = create("channel", "product_key_memory", d_model=16, n_heads=2, head_dim=8, n_keys=6, topk=3).double()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    q = pkm.query_norm(pkm.query(x).unflatten(-1, (2, 8)))  # [B, T, H, 8]
    expected = torch.zeros_like(x)
    for h in range(2):
        c1, c2 = pkm.sub_keys[h]
        keys = torch.stack([torch.cat([c1[a], c2[b]]) for a in range(6) for b in range(6)])  # slot a·6 + b
        scores = q[..., h, :] @ keys.T  # every slot's score
        best, slots = scores.topk(3, dim=-1)
        weights = torch.softmax(best, dim=-1)
        expected = expected + (weights[..., None] * pkm.value.weight.T[slots]).sum(-2)
    torch.testing.assert_close(pkm(x), expected)


def test_clear_errors():
    with pytest.raises(IncompatibleError, match="head_dim must be even"):
        create("channel", "product_key_memory", d_model=16, n_heads=1, head_dim=5)
    with pytest.raises(IncompatibleError, match="topk=9, n_keys=8"):
        create("channel", "product_key_memory", d_model=16, n_keys=8, topk=9)
