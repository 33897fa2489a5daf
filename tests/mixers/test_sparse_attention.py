"""Sparse Transformer patterns equal the paper's definitions position by position, attention under them
equals dense attention with that mask, and sliding-window generation keeps only the window."""

from __future__ import annotations

import pytest
import torch

from trevo.components.base import state_nbytes
from trevo.ops.attention import naive_softmax_attention
from trevo.ops.sparse_patterns import fixed_mask, sliding_window_mask, strided_mask
from trevo.registry import create

T = 23


def _definition(kind: str, i: int, j: int, l: int, c: int, causal: bool) -> bool:
    if causal and j > i:
        return False
    if kind == "strided":
        near = (i - j < l) if causal else abs(i - j) < l
        return near or (i - j) % l == 0
    if kind == "fixed":
        return j // l == i // l or j % l in range(l - c, l)
    return (0 <= i - j < l) if causal else abs(i - j) < l


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("kind,l,c", [("strided", 4, 0), ("strided", 5, 0), ("fixed", 4, 1), ("fixed", 5, 2),
                                      ("sliding", 3, 0)])
def test_masks_equal_the_definitions(kind, l, c, causal):
    pos = torch.arange(T)
    if kind == "strided":
        mask = strided_mask(pos, pos, l, causal=causal)
    elif kind == "fixed":
        mask = fixed_mask(pos, pos, l, c, causal=causal)
    else:
        mask = sliding_window_mask(pos, pos, l, causal=causal)
    expected = torch.tensor([[_definition(kind, i, j, l, c, causal) for j in range(T)] for i in range(T)])
    assert torch.equal(mask, expected)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("name,opts", [("sparse_strided", {"stride": 4}), ("sparse_fixed", {"stride": 4, "summary": 2}),
                                       ("sliding_window_attention", {"window": 3})])
def test_output_equals_dense_attention_under_the_mask(name, opts, causal):
    torch.manual_seed(0)
    mixer = create("mixer", name, d_model=16, causal=causal, **opts).double()
    x = torch.randn(2, T, 16, dtype=torch.float64)
    q, k, v = (t.unflatten(-1, (4, 4)).transpose(1, 2) for t in mixer.qkv(x).chunk(3, dim=-1))
    pos = torch.arange(T)
    allowed = mixer.pattern(pos, pos)
    bias = torch.zeros(T, T, dtype=torch.float64).masked_fill(~allowed, float("-inf"))
    o = naive_softmax_attention(q, k, v, causal=False, bias=bias[None])
    torch.testing.assert_close(mixer(x), mixer.out_proj(o.transpose(1, 2).flatten(2)))


def test_sliding_window_cache_holds_only_the_window():
    torch.manual_seed(0)
    mixer = create("mixer", "sliding_window_attention", d_model=16, causal=True, window=4).double()
    state = mixer.init_state(1, "cpu", torch.float64)
    sizes, nbytes = [], []
    for _ in range(10):
        _, state = mixer.step(torch.randn(1, 16, dtype=torch.float64), state)
        sizes.append(state["k"].shape[2])
        nbytes.append(state_nbytes(state))
    assert sizes == [1, 2, 3] + [3] * 7
    assert len(set(nbytes[2:])) == 1


def test_rotary_sliding_window_equals_rotary_attention_when_the_window_covers_the_sequence():
    from trevo.registry import build

    torch.manual_seed(0)
    rope = build("position", "rope", d_model=16)
    swa = build("mixer", "sliding_window_attention", {"window": 12}, d_model=16, causal=True, position=rope).double()
    full = build("mixer", "softmax_attention", {}, d_model=16, causal=True, position=rope).double()
    with torch.no_grad():
        full.q_proj.weight.copy_(swa.qkv.weight[:16])
        full.kv_proj.weight.copy_(swa.qkv.weight[16:])
        full.out_proj.weight.copy_(swa.out_proj.weight)
    x = torch.randn(2, 12, 16, dtype=torch.float64)
    torch.testing.assert_close(swa(x), full(x), rtol=1e-10, atol=1e-12)
    # the rotation follows each token's absolute position through prefill and steps
    y, state = swa.prefill(x[:, :5])
    outs = [y]
    for t in range(5, 12):
        out, state = swa.step(x[:, t], state)
        outs.append(out[:, None])
    torch.testing.assert_close(torch.cat(outs, 1), swa(x), rtol=1e-10, atol=1e-12)
