"""H-Transformer-1D: the blocked hierarchy equals the H-matrix built pair by pair; it is exact attention
when one block holds the sequence; the coarse blocks see means of Q, K and sums of V."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.ops.h_transformer import h_attention, h_attention_quadratic, n_levels


def test_levels_by_hand():
    assert [n_levels(t, 4) for t in (3, 4, 5, 8, 9, 16, 17, 32)] == [0, 0, 1, 1, 2, 2, 3, 3]


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("t", [16, 19])
def test_blocked_hierarchy_equals_the_pairwise_h_matrix(causal, t):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, t, 4, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(h_attention(q, k, v, 2, causal=causal), h_attention_quadratic(q, k, v, 2, causal=causal))


def test_padding_is_left_out_of_the_coarse_groups():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 1, 12, 4, dtype=torch.float64) for _ in range(3))
    real = torch.ones(1, 12, dtype=torch.bool)
    real[0, 9:] = False
    got = h_attention(q, k, v, 2, causal=False, key_padding_mask=real)
    want = h_attention_quadratic(q, k, v, 2, causal=False, key_padding_mask=real)
    torch.testing.assert_close(got[:, :, :9], want[:, :, :9])


def test_one_block_is_exact_attention():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 8, 4, dtype=torch.float64) for _ in range(3))
    full = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(h_attention(q, k, v, 8, causal=True), full)


def test_a_far_query_sees_a_coarse_block_by_hand():
    """T = 4, N_r = 1, bidirectional: query 0 attends key 0 exactly, key 1 at level 0 (its sibling,
    exact), and keys 2, 3 at level 1 through the mean query of {0, 1} and the mean key of {2, 3}."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 1, 4, 2, dtype=torch.float64) for _ in range(3))
    s = lambda a, b: float(a @ b) / math.sqrt(2)  # noqa: E731
    qbar, kbar = (q[0, 0, 0] + q[0, 0, 1]) / 2, (k[0, 0, 2] + k[0, 0, 3]) / 2
    logits = torch.tensor([s(q[0, 0, 0], k[0, 0, 0]), s(q[0, 0, 0], k[0, 0, 1]), s(qbar, kbar), s(qbar, kbar)],
                          dtype=torch.float64)
    want = torch.softmax(logits, 0) @ v[0, 0]
    torch.testing.assert_close(h_attention(q, k, v, 1, causal=False)[0, 0, 0], want)
