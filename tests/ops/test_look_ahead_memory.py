"""LaMemo's memory interpolation and look-ahead window (trevo.ops.look_ahead_memory): merging outputs by
their log-normalisers is one softmax over all the keys, checked against a float64 loop; the window by hand."""

from __future__ import annotations

import torch

from trevo.ops.look_ahead_memory import look_ahead_mask, masked_attention, merge, merge_reference


def test_merging_chunk_by_chunk_is_one_softmax_over_every_key():
    """Keys arrive in chunks of 3, 1, 5 and 2 (as a memory position meets new keys segment by segment); each
    chunk's output is merged into the running one: the result is attention over all 11 keys at once."""
    torch.manual_seed(0)
    sizes, d = [3, 1, 5, 2], 4
    scores = [torch.randn(2, 3, 1, n, dtype=torch.float64) * 3 for n in sizes]
    values = [torch.randn(2, 3, n, d, dtype=torch.float64) for n in sizes]
    every = torch.ones(1, max(sizes), dtype=torch.bool)
    out, z = masked_attention(scores[0], every[:, :sizes[0]], values[0])
    for s, v in zip(scores[1:], values[1:], strict=True):
        out, z = merge(out, z, *masked_attention(s, every[:, :s.shape[-1]], v))
    for b in range(2):
        for h in range(3):
            expected = merge_reference([s[b, h, 0] for s in scores], [v[b, h] for v in values])
            torch.testing.assert_close(out[b, h, 0], expected)
            torch.testing.assert_close(z[b, h, 0], torch.logsumexp(torch.cat([s[b, h, 0] for s in scores]), 0))


def test_a_query_with_no_key_merges_as_nothing():
    scores, v = torch.randn(1, 1, 2, 3), torch.randn(1, 1, 3, 4)
    allowed = torch.tensor([[True, False, True], [False, False, False]])
    out, z = masked_attention(scores, allowed, v)
    assert torch.equal(out[0, 0, 1], torch.zeros(4)) and z[0, 0, 1] == float("-inf")
    merged, merged_z = merge(out, z, out.flip(2), z.flip(2))  # row 1 merges row 0's output with nothing
    torch.testing.assert_close(merged[0, 0, 1], out[0, 0, 0])
    torch.testing.assert_close(merged_z[0, 0, 1], z[0, 0, 0])


def test_the_look_ahead_window_by_hand():
    """M = 4 memory positions, segments of q = 2: the keys not yet seen are 3 and 4 (4 is the segment's first
    token), and only those to the right of each position."""
    expected = torch.tensor([[0, 0, 0, 1, 1],
                             [0, 0, 0, 1, 1],
                             [0, 0, 0, 1, 1],
                             [0, 0, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(look_ahead_mask(4, 2), expected)
    assert torch.equal(look_ahead_mask(2, 4), torch.tensor([[0, 1, 1], [0, 0, 1]], dtype=torch.bool))
