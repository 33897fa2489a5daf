"""Benchmark measurement on known cases (never its timings): peak memory of a known allocation, FLOPs of a
linear layer and of CPU attention."""

from __future__ import annotations

import pytest
import torch

from trevo.bench import measure as M


def test_peak_memory_sees_a_known_allocation_and_its_release():
    if not M.memory_method(torch.device("cpu")):
        pytest.skip("no faithful CPU memory measure on this platform")

    def allocate():
        big = torch.ones(48 * 2 ** 20 // 4)  # 48 MiB, touched
        del big
        return [torch.ones(2 ** 16) for _ in range(64)]  # 64 × 256 KiB = 16 MiB, alive together

    peak = M.mib(M.peak_bytes(allocate, torch.device("cpu")))
    assert 47 < peak < 56  # the 48 MiB peak, not 48 + 16: the first block was returned before the rest


def test_flop_count_of_a_linear_layer_and_of_cpu_attention():
    lin = torch.nn.Linear(32, 16, bias=False)
    x = torch.randn(4, 32)
    assert M.count_flops(lambda: lin(x)) == 2 * 4 * 32 * 16
    q = torch.randn(1, 2, 8, 4)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    dense = 2 * (2 * 2 * 8 * 8 * 4)  # QKᵀ and AV: 2 matmuls of 2·H·T·T·D multiply-adds each
    assert M.count_flops(lambda: sdpa(q, q, q)) == dense
    assert M.count_flops(lambda: sdpa(q, q, q, is_causal=True)) == dense // 2  # the masked half is skipped
    qg = q.clone().requires_grad_(True)
    assert M.count_flops(lambda: sdpa(qg, qg, qg, is_causal=True).sum().backward()) == dense // 2 * 7 // 2
