"""The RG-LRU op: every scan form equals the float64 loop of Griffin's equations (§2.4), outputs and
gradients, from a carried state; √(1 − a²) keeps a bounded derivative where a_t → 1."""

from __future__ import annotations

import pytest
import torch

from trevo.ops.rg_lru import MAX_SQRT_GRADIENT, rg_lru, rg_lru_reference, rg_lru_terms


def _inputs(B: int = 2, T: int = 11, D: int = 6):
    g = torch.Generator().manual_seed(0)
    x, ga, gx = (torch.randn(B, T, D, generator=g, dtype=torch.float64) for _ in range(3))
    lam = torch.randn(D, generator=g, dtype=torch.float64) + 3
    h0 = torch.randn(B, D, generator=g, dtype=torch.float64)
    return x, ga, gx, lam, h0


@pytest.mark.parametrize("form", ["chunk", "scan", "recurrent"])
def test_every_form_equals_the_float64_loop_of_the_equations(form):
    x, ga, gx, lam, h0 = _inputs()
    leaves = [t.clone().requires_grad_() for t in (x, ga, gx, lam, h0)]
    h, last = rg_lru(*leaves, form=form, chunk_size=4)
    ref, ref_last = rg_lru_reference(*[t.detach() for t in leaves])
    torch.testing.assert_close(h, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(last, ref_last, rtol=1e-12, atol=1e-12)
    ref_leaves = [t.detach().clone().requires_grad_() for t in leaves]
    weight = torch.randn_like(ref)
    (h * weight).sum().backward()
    (rg_lru_reference(*ref_leaves)[0] * weight).sum().backward()
    for a, b in zip(leaves, ref_leaves, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-10)


def test_the_state_norm_is_kept_when_the_input_gate_is_open():
    # √(1 − a²) normalises: a constant unit input with the input gate fully open drives |h| to 1.
    x = torch.ones(1, 400, 3, dtype=torch.float64)
    gate = torch.full_like(x, 40.0)  # σ = 1: r_t = i_t = 1
    h, _ = rg_lru(x, gate, gate, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), form="recurrent")
    a = torch.sigmoid(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)) ** 8
    fixed_point = (1 - a ** 2).sqrt() / (1 - a)  # h = a h + √(1 − a²)
    torch.testing.assert_close(h[0, -1], fixed_point, rtol=1e-9, atol=1e-9)


def test_the_square_root_has_a_bounded_derivative_at_a_equals_one():
    x = torch.ones(1, 1, 1, dtype=torch.float64)
    gate_a = torch.full_like(x, -800.0, requires_grad=True)  # r_t = 0: a_t = 1 exactly
    _, b = rg_lru_terms(x, gate_a, torch.zeros_like(x), torch.zeros(1, dtype=torch.float64))
    b.sum().backward()
    assert torch.isfinite(gate_a.grad).all() and b.item() == 0.0
    assert MAX_SQRT_GRADIENT == 1000.0
