"""EL-attention is lossless: its outputs equal softmax_attention with the same weights, in training and in
generation, and its generation cache holds half the bytes of the KV cache."""

from __future__ import annotations

import pytest
import torch

from trevo.components.base import state_nbytes
from trevo.registry import build


def _pair(causal):
    torch.manual_seed(0)
    el = build("mixer", "el_attention", {"n_heads": 2}, d_model=8, causal=causal).double()
    plain = build("mixer", "softmax_attention", {"n_heads": 2}, d_model=8, causal=causal).double()
    with torch.no_grad():
        plain.q_proj.weight.copy_(el.q_proj.weight)
        plain.kv_proj.weight.copy_(torch.cat([el.k_proj.weight, el.v_proj.weight]))
        plain.out_proj.weight.copy_(el.out_proj.weight)
    return el, plain


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("form", ["sdpa", "quadratic"])
def test_outputs_equal_plain_attention(causal, form):
    el, plain = _pair(causal)
    el.form = form
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    torch.testing.assert_close(el(x), plain(x))


def test_generation_equals_plain_attention_with_half_the_cache():
    el, plain = _pair(True)
    x = torch.randn(2, 12, 8, dtype=torch.float64)
    ye, se = el.prefill(x[:, :7])
    yp, sp = plain.prefill(x[:, :7])
    for t in range(7, 12):
        a, se = el.step(x[:, t], se)
        b, sp = plain.step(x[:, t], sp)
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(ye, yp)
    assert state_nbytes(se) * 2 == state_nbytes(sp)
