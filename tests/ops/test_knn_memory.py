"""kNN attention over a memory: torch.topk over every key equals the brute-force float64 loop."""

from __future__ import annotations

import pytest
import torch

from trevo.ops.knn_memory import knn_attention, knn_attention_reference


@pytest.mark.parametrize("topk", [1, 3, 50])
def test_top_k_equals_brute_force(topk):
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 2, 5, 4, generator=gen)
    k, v = torch.randn(2, 2, 7, 4, generator=gen), torch.randn(2, 2, 7, 4, generator=gen)
    torch.testing.assert_close(knn_attention(q.double(), k.double(), v.double(), topk),
                               knn_attention_reference(q, k, v, topk))


def test_top_one_is_the_value_of_the_best_key():
    q = torch.tensor([[[[1.0, 0.0]]]])
    k = torch.tensor([[[[0.0, 1.0], [2.0, 0.0], [1.0, 0.0]]]])
    v = torch.tensor([[[[10.0], [20.0], [30.0]]]])
    assert knn_attention(q, k, v, 1).item() == 20.0  # key 1 scores 2/√2, the largest
