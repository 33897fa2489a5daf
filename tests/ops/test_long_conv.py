"""The long convolution (trevo.ops.long_conv): the FFT forms equal the Toeplitz (quadratic) forms and an
explicit double loop; the exact (blocked) FFT convolution is bitwise causal, has the Toeplitz product's
gradients, and costs O(T log² T) FFT points (never the O(T²/block · log T) of one FFT per block)."""

from __future__ import annotations

import math

import pytest
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


def conv_loop(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """y[..., d, t] = Σ_{s<=t} k[d, t−s] u[..., d, s], one term at a time."""
    y = torch.zeros_like(u)
    for t in range(u.shape[-1]):
        for s in range(t + 1):
            y[..., t] += k[:, t - s] * u[..., s]
    return y


@pytest.mark.parametrize("T,block", [(1, 1), (2, 1), (19, 4), (19, 8), (32, 8), (33, 8), (64, 3), (100, 16)])
def test_exact_fft_convolution_equals_the_convolution_sum(T, block):
    torch.manual_seed(T)
    u = torch.randn(2, 3, T, dtype=torch.float64)
    k = torch.randn(3, T + 5, dtype=torch.float64)  # longer kernels: only the first T taps count
    expected = conv_loop(u, k)
    torch.testing.assert_close(fft_causal_conv(u, k, block), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fft_causal_conv(u, k), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exact_fft_convolution_is_bitwise_causal(dtype):
    torch.manual_seed(0)
    T = 200
    u = torch.randn(2, 4, T, dtype=dtype)
    k = torch.randn(4, T, dtype=dtype)
    y = fft_causal_conv(u, k, 8)
    for t in (0, 7, 8, 9, 63, 64, 65, 127, 128, 150, T - 2):
        future = u.clone()
        future[..., t + 1:] = torch.randn_like(future[..., t + 1:]) * 100
        assert torch.equal(fft_causal_conv(future, k, 8)[..., :t + 1], y[..., :t + 1]), t


def test_a_single_fft_is_causal_only_up_to_rounding():
    """Why the blocked form exists: the plain 2T-point FFT lets the future in at rounding level."""
    torch.manual_seed(0)
    u, k = torch.randn(1, 4, 256), torch.randn(4, 256)
    future = u.clone()
    future[..., 1:] += 1000
    leak = (torch.fft.irfft(torch.fft.rfft(future, n=512) * torch.fft.rfft(k, n=512), n=512)[..., 0]
            - torch.fft.irfft(torch.fft.rfft(u, n=512) * torch.fft.rfft(k, n=512), n=512)[..., 0])
    assert leak.abs().max() > 0
    assert torch.equal(fft_causal_conv(future, k, 16)[..., :1], fft_causal_conv(u, k, 16)[..., :1])


def test_gradients_equal_those_of_the_toeplitz_product():
    torch.manual_seed(0)
    u = torch.randn(2, 3, 45, dtype=torch.float64, requires_grad=True)
    k = torch.randn(3, 50, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 3, 45, dtype=torch.float64)
    fast = torch.autograd.grad(fft_causal_conv(u, k, 4), (u, k), g)
    direct = torch.autograd.grad(causal_conv_quadratic(u, k[:, :45]), (u, k), g)
    for a, b in zip(fast, direct, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    assert torch.autograd.gradcheck(lambda a, b: fft_causal_conv(a, b, 4), (u[:1, :, :13], k[:, :13]))


def test_a_batch_free_kernel_gradient_sums_over_every_leading_dimension():
    torch.manual_seed(0)
    u = torch.randn(2, 5, 3, 20, dtype=torch.float64)
    k = torch.randn(3, 20, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(fft_causal_conv(u, k, 4).sum(), k)
    (expected,) = torch.autograd.grad(conv_loop(u, k).sum(), k)
    torch.testing.assert_close(g, expected, rtol=1e-10, atol=1e-10)


def test_fft_work_grows_as_t_log_t_per_level(monkeypatch):
    """Points transformed by the exact form's rfft calls: at most 2T per level, ⌈log2(T/block)⌉ levels."""
    points = []
    real_rfft = torch.fft.rfft

    def counting_rfft(x, n=None, **kw):
        points.append((x.numel() // x.shape[-1]) * (n or x.shape[-1]))
        return real_rfft(x, n=n, **kw)

    monkeypatch.setattr(torch.fft, "rfft", counting_rfft)
    for T in (1000, 4096):
        points.clear()
        u, k = torch.randn(1, 1, T), torch.randn(1, T)
        fft_causal_conv(u, k, 32)
        levels = math.ceil(math.log2(T / 32))
        # per level: the left blocks (≈ T points with their zero padding) and one 2b-point kernel
        assert sum(points) <= 2 * T * levels + 4 * T, (T, sum(points))
