"""The long convolution (trevo.ops.long_conv): the FFT forms equal the Toeplitz (quadratic) forms and an
explicit double loop; the blocked FFT convolution is exactly causal."""

from __future__ import annotations

import torch

from trevo.ops.long_conv import (
    bidirectional_conv_quadratic,
    causal_conv_quadratic,
    fft_bidirectional_conv,
    fft_causal_conv,
)


def test_fft_convolution_equals_the_direct_causal_convolution_and_is_exactly_causal():
    torch.manual_seed(0)
    u, k = torch.randn(2, 3, 23, dtype=torch.float64), torch.randn(3, 30, dtype=torch.float64)
    explicit = torch.zeros_like(u)
    for t in range(23):
        for s in range(t + 1):
            explicit[..., t] += k[:, t - s] * u[..., s]
    torch.testing.assert_close(causal_conv_quadratic(u, k), explicit)
    for block in (None, 4, 5, 23):
        torch.testing.assert_close(fft_causal_conv(u, k, block), explicit, rtol=1e-10, atol=1e-12)
    y = fft_causal_conv(u, k, block=4)
    for t in (0, 3, 4, 9, 21):
        u2 = u.clone()
        u2[..., t + 1:] = torch.randn_like(u2[..., t + 1:]) * 100
        assert torch.equal(fft_causal_conv(u2, k, block=4)[..., :t + 1], y[..., :t + 1]), t


def test_bidirectional_convolution_has_forward_and_backward_kernels():
    torch.manual_seed(0)
    u = torch.randn(1, 2, 9, dtype=torch.float64)
    k, kb = torch.randn(2, 9, dtype=torch.float64), torch.randn(2, 9, dtype=torch.float64)
    explicit = torch.zeros_like(u)
    for t in range(9):
        for s in range(9):
            explicit[..., t] += (k[:, t - s] if s <= t else kb[:, s - t - 1]) * u[..., s]
    torch.testing.assert_close(bidirectional_conv_quadratic(u, k, kb), explicit)
    torch.testing.assert_close(fft_bidirectional_conv(u, k, kb), explicit)
