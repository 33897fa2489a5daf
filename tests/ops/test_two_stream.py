"""XLNet's permutation masks against a loop over the factorisation order; the identity order gives
causal attention (sdpa's is_causal); a query that sees no key gets zeros."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.ops.two_stream import masked_attention, order_ranks, permutation_masks


def test_masks_match_a_loop_over_the_order():
    order = torch.stack([torch.randperm(7, generator=torch.Generator().manual_seed(s)) for s in range(3)])
    content, query = permutation_masks(order)
    for b in range(3):
        z = order[b].tolist()
        assert order_ranks(order)[b, z[4]] == 4
        for a, i in enumerate(z):  # i is predicted a-th
            for c, j in enumerate(z):
                assert bool(content[b, i, j]) == (c <= a)
                assert bool(query[b, i, j]) == (c < a)
        assert not query[b].diagonal().any() and content[b].diagonal().all()


def test_the_identity_order_is_causal_attention():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 6, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    identity = torch.arange(6).expand(2, 6)
    content, query = permutation_masks(identity)
    assert torch.equal(content[0], torch.ones(6, 6, dtype=torch.bool).tril())
    assert torch.equal(query[0], torch.ones(6, 6, dtype=torch.bool).tril(-1))
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(masked_attention(q, k, v, content), expected)
    out = masked_attention(q, k, v, query)
    assert torch.equal(out[:, :, 0], torch.zeros_like(out[:, :, 0]))  # the first of the order sees nothing
    # position t of the query stream = causal attention over the keys before t
    torch.testing.assert_close(out[:, :, 3:4], F.scaled_dot_product_attention(q[:, :, 3:4], k[:, :, :3], v[:, :, :3]))
