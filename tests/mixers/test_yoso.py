"""YOSO: SimHash collision frequencies match the closed form (1 − θ/π)^τ; the bucket tables equal the
collision matrix; YOSO-E equals its formula; many hashes approach YOSO-E."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.ops.yoso import collision_probability, expected_sum, hash_codes, sampled_sum_quadratic, sampled_sum_tables
from trevo.registry import build


def test_collision_frequency_matches_the_closed_form():
    torch.manual_seed(0)
    tau, m = 3, 20000
    q = torch.nn.functional.normalize(torch.randn(6, 5, dtype=torch.float64), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(6, 5, dtype=torch.float64), dim=-1)
    planes = torch.randn(5, m * tau, dtype=torch.float64)
    freq = (hash_codes(q, planes, tau)[:, None] == hash_codes(k, planes, tau)[None]).double().mean(-1)  # [6, 6]
    p = collision_probability(q, k, tau)
    theta = torch.arccos((q @ k.T).clamp(-1, 1))
    torch.testing.assert_close(p, (1 - theta / math.pi) ** tau, atol=1e-5, rtol=1e-5)
    sigma = (p * (1 - p) / m).sqrt()
    assert ((freq - p).abs() <= 5 * sigma + 1e-9).all(), (freq - p).abs().max()


@pytest.mark.parametrize("causal", [True, False])
def test_bucket_tables_equal_the_collision_matrix(causal):
    torch.manual_seed(0)
    qc, kc = torch.randint(0, 8, (2, 2, 11, 4)), torch.randint(0, 8, (2, 2, 11, 4))
    v = torch.randn(2, 2, 11, 3, dtype=torch.float64)
    tables = torch.zeros(2, 2, 4, 8, 3, dtype=torch.float64)
    got, _ = sampled_sum_tables(qc, kc, v, tables, causal=causal, chunk_size=4)
    torch.testing.assert_close(got, sampled_sum_quadratic(qc, kc, v, causal=causal))


def test_yoso_e_is_its_formula():
    torch.manual_seed(0)
    m = build("mixer", "yoso_e", {"hash_code_len": 4, "n_heads": 1}, d_model=4, causal=False).double()
    x = torch.randn(1, 6, 4, dtype=torch.float64)
    q, k, v = m.qkv(x).chunk(3, dim=-1)
    q, k = q / q.norm(dim=-1, keepdim=True), k / k.norm(dim=-1, keepdim=True)
    w = (1 - torch.arccos(q @ k.transpose(1, 2)) / math.pi) ** 4
    y = w @ v
    torch.testing.assert_close(m(x), m.out_proj(y / y.norm(dim=-1, keepdim=True)))


def test_many_hashes_approach_the_expectation():
    torch.manual_seed(0)
    q, k = (torch.nn.functional.normalize(torch.randn(1, 1, 8, 4, dtype=torch.float64), dim=-1) for _ in range(2))
    v = torch.randn(1, 1, 8, 4, dtype=torch.float64)
    planes = torch.randn(4, 4000 * 2, dtype=torch.float64)
    sampled = sampled_sum_quadratic(hash_codes(q, planes, 2), hash_codes(k, planes, 2), v, causal=True)
    torch.testing.assert_close(sampled, expected_sum(q, k, v, 2, causal=True), atol=0.1, rtol=0)


def test_the_causal_state_is_constant_and_redraw_is_per_pass():
    m = build("mixer", "yoso", {"hash_code_len": 3, "n_hashes": 2}, d_model=8, causal=True)
    m.eval()
    _, s1 = m.prefill(torch.randn(1, 4, 8))
    _, s2 = m.prefill(torch.randn(1, 40, 8))
    assert s1["S"].shape == s2["S"].shape
    m.train()
    planes = m.planes.clone()
    m(torch.randn(1, 4, 8))
    m(torch.randn(1, 4, 8))
    assert not torch.equal(planes, m.planes)  # the second training pass drew new hyperplanes


def test_a_row_without_any_collision_has_moderate_gradients():
    """A query that collides with no key has output 0, a point where y/‖y‖ has no derivative: its
    gradient must stay moderate (through y/‖y‖ at 0 it is ~1/ε, which overflows training to NaN)."""
    torch.manual_seed(0)
    m = build("mixer", "yoso", {"hash_code_len": 16, "n_hashes": 1, "redraw_interval": 0}, d_model=8, causal=True)
    x = torch.randn(4, 16, 8, requires_grad=True)
    y = m(x)
    assert (y.detach().abs().sum(-1) == 0).any()  # 16-bit codes: some queries meet no key
    y.square().sum().backward()
    assert max(float(p.grad.abs().max()) for p in m.parameters()) < 1e4 and float(x.grad.abs().max()) < 1e4
