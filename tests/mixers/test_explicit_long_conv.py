"""SGConv's multi-scale kernel and the simple long convolution's Squash/Smooth kernel equal their
formulas tap by tap; the layers' FFT convolutions equal a direct loop convolution (causal and
two-sided); the simple long convolution refuses inputs longer than its kernel."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trevo.errors import TrevoError
from trevo.ops.explicit_long_conv import sgconv_kernel, sgconv_num_scales, simple_long_conv_kernel
from trevo.registry import create


def test_sgconv_kernel_matches_the_formula_tap_by_tap():
    d, alpha, n = 3, 0.5, 4
    torch.manual_seed(0)
    w = [torch.randn(2, d, dtype=torch.float64) for _ in range(n)]
    k = sgconv_kernel(w, alpha)
    assert k.shape[-1] == d * 2 ** (n - 1)
    for lag in range(k.shape[-1]):
        i = 0 if lag < d else (lag // d).bit_length()  # scale i >= 1 covers lags [d·2^{i−1}, d·2^i)
        start, factor = (0, 1) if i == 0 else (d * 2 ** (i - 1), 2 ** (i - 1))
        torch.testing.assert_close(k[:, lag], alpha ** i * w[i][:, (lag - start) // factor])


@pytest.mark.parametrize("max_len,d", [(19, 4), (64, 64), (65, 8), (1, 4)])
def test_sgconv_scales_cover_max_len(max_len, d):
    n = sgconv_num_scales(max_len, d)
    assert d * 2 ** (n - 1) >= max_len and (n == 1 or d * 2 ** (n - 2) < max_len)


def test_sgconv_kernel_has_unit_norm_at_init():
    mixer = create("mixer", "sgconv", d_model=6, causal=False, max_len=40, kernel_dim=5)
    k = mixer.kernel(40)
    torch.testing.assert_close(k.norm(dim=-1), torch.ones(2, 6))


def test_simple_long_conv_kernel_is_smooth_of_squash():
    torch.manual_seed(0)
    raw = torch.randn(3, 12, dtype=torch.float64)
    lam, p = 0.4, 3
    squashed = torch.tensor([[(abs(v) - lam) * (1 if v > 0 else -1) if abs(v) > lam else 0.0 for v in row]
                             for row in raw.tolist()], dtype=torch.float64)
    ref = torch.stack([torch.stack([squashed[c, max(0, t - 1):t + 2].mean() for t in range(12)]) for c in range(3)])
    torch.testing.assert_close(simple_long_conv_kernel(raw, lam, p), ref)
    assert (simple_long_conv_kernel(raw, lam, 1) == 0).sum() == (raw.abs() <= lam).sum()


def _loop_layer(mixer, x, causal):
    """W_out GELU(Σ_s k_{t−s} u_s (+ Σ_{s>t} k'_{s−t−1} u_s) + D u_t) by explicit loops."""
    T = x.shape[1]
    k = mixer.kernel(T)
    y = torch.zeros_like(x)
    for t in range(T):
        for s in range(T):
            if s <= t:
                y[:, t] += k[0, :, t - s] * x[:, s]
            elif not causal:
                y[:, t] += k[1, :, s - t - 1] * x[:, s]
    return mixer.out_proj(F.gelu(y + mixer.skip * x))


@pytest.mark.parametrize("name,opts", [("sgconv", {"kernel_dim": 3}), ("simple_long_conv", {"squash": 0.05})])
@pytest.mark.parametrize("causal", [True, False])
def test_fft_and_quadratic_forms_equal_a_loop_convolution(name, opts, causal):
    torch.manual_seed(0)
    mixer = create("mixer", name, d_model=4, causal=causal, max_len=16, fft_chunk_size=4, **opts).double()
    x = torch.randn(2, 13, 4, dtype=torch.float64)
    ref = _loop_layer(mixer, x, causal)
    for form in ("fft", "quadratic"):
        mixer.form = form
        torch.testing.assert_close(mixer(x), ref)


def test_simple_long_conv_refuses_inputs_past_max_len():
    mixer = create("mixer", "simple_long_conv", d_model=4, causal=True, max_len=8)
    with pytest.raises(TrevoError, match="max_len"):
        mixer(torch.randn(1, 9, 4))
