"""AFT's defining properties: each variant equals eq. 2 with its position bias, computed naively."""

from __future__ import annotations

import pytest
import torch

from trevo.components.base import state_nbytes
from trevo.errors import TrevoError
from trevo.ops.aft import aft_blockwise, aft_quadratic
from trevo.registry import create

D, T = 8, 11


def formula(x: torch.Tensor, mixer, w: torch.Tensor, causal: bool) -> torch.Tensor:
    """Eq. 2 literally, one (t, t') at a time: w is ``[H, T, T]`` acting on H channel groups."""
    q, k, v = mixer.qkv(x).chunk(3, dim=-1)
    heads = w.shape[0]
    y = torch.zeros_like(v)
    for t in range(x.shape[1]):
        num = torch.zeros_like(v[:, 0])
        den = torch.zeros_like(v[:, 0])
        for s in range(t + 1 if causal else x.shape[1]):
            wts = w[:, t, s].repeat_interleave(D // heads)
            e = torch.exp(k[:, s] + wts)
            num, den = num + e * v[:, s], den + e
        y[:, t] = torch.sigmoid(q[:, t]) * num / den
    return mixer.out_proj(y)


def _mixer(name: str, causal: bool, **kw):
    torch.manual_seed(0)
    return create("mixer", name, d_model=D, causal=causal, chunk_size=4, **kw).double()


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("form", ["quadratic", "chunk"])
def test_aft_full_equals_its_formula(causal, form):
    mixer = _mixer("aft_full", causal, max_len=T, form=form)
    with torch.no_grad():
        mixer.w.normal_()
    x = torch.randn(2, T, D, dtype=torch.float64)
    torch.testing.assert_close(mixer(x), formula(x, mixer, mixer.w.detach()[None], causal))


@pytest.mark.parametrize("causal", [True, False])
def test_aft_simple_is_aft_full_with_zero_bias(causal):
    full, simple = _mixer("aft_full", causal, max_len=T), _mixer("aft_simple", causal)
    simple.load_state_dict({k: v for k, v in full.state_dict().items() if k != "w"})
    x = torch.randn(2, T, D, dtype=torch.float64)
    torch.testing.assert_close(simple(x), full(x))
    torch.testing.assert_close(simple(x), formula(x, simple, torch.zeros(1, T, T, dtype=torch.float64), causal))


@pytest.mark.parametrize("causal", [True, False])
def test_aft_local_is_aft_full_with_w_zero_outside_the_window(causal):
    s = 3
    full, local = _mixer("aft_full", causal, max_len=T), _mixer("aft_local", causal, max_len=T, window=s)
    with torch.no_grad():
        local.band.normal_()
    t = torch.arange(T)
    diff = t[:, None] - t[None, :]
    inside = (diff >= 0) & (diff < s) if causal else diff.abs() < s
    w = torch.zeros(T, T, dtype=torch.float64)
    for i in range(T):
        for j in range(T):
            if inside[i, j]:
                w[i, j] = local.band[0, i, i - j if causal else j - i + s - 1]
    full.load_state_dict({**local.state_dict(), "w": w}, strict=False)
    x = torch.randn(2, T, D, dtype=torch.float64)
    torch.testing.assert_close(local(x), full(x))
    torch.testing.assert_close(local(x), formula(x, local, w[None], causal))


@pytest.mark.parametrize("causal", [True, False])
def test_aft_conv_equals_the_papers_convolution_form(causal):
    """Eq. 6: [conv(e^K ⊙ V, e^w − 1) + Σ e^K ⊙ V] / [conv(e^K, e^w − 1) + Σ e^K], per head."""
    s, heads = 3, 2
    mixer = _mixer("aft_conv", causal, n_heads=heads, window=s)
    with torch.no_grad():
        mixer.band.normal_()
    x = torch.randn(2, T, D, dtype=torch.float64)
    q, k, v = mixer.qkv(x).chunk(3, dim=-1)
    ek = torch.exp(k)
    y = torch.zeros_like(v)
    for t in range(T):
        keys = range(t + 1) if causal else range(T)
        num = sum(ek[:, j] * v[:, j] for j in keys)
        den = sum(ek[:, j] for j in keys)
        for j in keys:
            o = t - j if causal else j - t + s - 1
            if 0 <= o < mixer.band.shape[-1]:
                g = (torch.exp(mixer.band[:, 0, o]) - 1).repeat_interleave(D // heads)
                num, den = num + g * ek[:, j] * v[:, j], den + g * ek[:, j]
        y[:, t] = torch.sigmoid(q[:, t]) * num / den
    torch.testing.assert_close(mixer(x), mixer.out_proj(y))


@pytest.mark.parametrize("name", ["aft_full", "aft_simple", "aft_local", "aft_conv"])
@pytest.mark.parametrize("causal", [True, False])
def test_stable_for_large_keys(name, causal):
    """The weights are a softmax over t', so adding a huge constant to K changes nothing (the literal
    exp would overflow), and keys spread over hundreds stay finite."""
    extra = {"max_len": T} if name in ("aft_full", "aft_local") else {}
    mixer = _mixer(name, causal, **extra).float()
    x = torch.randn(2, T, D)
    with torch.no_grad():
        mixer.qkv.weight[D:2 * D] *= 300.0
    spread = mixer(x)
    assert torch.isfinite(spread).all()
    q, k, v = mixer.qkv(x).chunk(3, dim=-1)
    bias = mixer.bias(torch.arange(T), torch.arange(T)) if hasattr(mixer, "bias") else torch.zeros(1, T, T)
    ref = mixer.out_proj(torch.sigmoid(q) * aft_quadratic(k.double(), v.double(), bias.double(), causal=causal).float())
    torch.testing.assert_close(spread, ref, rtol=1e-4, atol=1e-5)
    mixer, x = mixer.double(), x.double()  # exp(5000) overflows even float64
    with torch.no_grad():
        mixer.qkv.weight[D:2 * D] /= 300.0
        y = mixer(x)
        shift = torch.cat([torch.zeros(D), torch.full((D,), 5000.0), torch.zeros(D)])
        mixer.qkv.bias = torch.nn.Parameter(shift.double())
    torch.testing.assert_close(mixer(x), y, rtol=1e-9, atol=1e-10)


def test_blockwise_uses_only_past_keys_for_its_stabiliser():
    """A huge future key must not underflow the past: causal outputs stay exact."""
    k, v = torch.randn(1, 12, 4, dtype=torch.float64), torch.randn(1, 12, 4, dtype=torch.float64)
    bias = torch.randn(1, 12, 12, dtype=torch.float64)
    k2 = k.clone()
    k2[:, 9:] += 2000.0
    ref = aft_quadratic(k, v, bias, causal=True)
    out = aft_blockwise(k2, v, bias, causal=True, chunk_size=3)
    torch.testing.assert_close(out[:, :9], ref[:, :9], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["aft_simple", "aft_conv"])
def test_generation_state_is_constant_size(name):
    mixer = _mixer(name, True, **({"window": 3} if name == "aft_conv" else {}))
    state = mixer.init_state(1, "cpu", torch.float64)
    sizes = []
    for _ in range(10):
        _, state = mixer.step(torch.randn(1, D, dtype=torch.float64), state)
        sizes.append(state_nbytes(state))
    assert len(set(sizes[4:])) == 1


@pytest.mark.parametrize("name", ["aft_full", "aft_local"])
def test_fixed_length_refuses_longer_inputs(name):
    mixer = _mixer(name, True, max_len=6)
    with pytest.raises(TrevoError, match="model.max_len"):
        mixer(torch.randn(1, 7, D, dtype=torch.float64))
