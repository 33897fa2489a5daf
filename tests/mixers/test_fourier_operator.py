"""AFNO and the FNO layer against independent references: numpy FFTs with per-frequency loops, and
hand-computed responses to a single Fourier mode."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trevo.errors import TrevoError
from trevo.ops.fourier_operator import fno_spectral_conv
from trevo.testing import build_mixer


def _softshrink(a: np.ndarray, lam: float) -> np.ndarray:
    return np.sign(a) * np.maximum(np.abs(a) - lam, 0.0)


def _afno_numpy(x: np.ndarray, m, shrink: float, axes: tuple[int, ...]) -> np.ndarray:
    """AFNO written with numpy: FFT, then for every frequency and block the complex MLP in loops."""
    w1 = m.w1[0].detach().numpy() + 1j * m.w1[1].detach().numpy()
    b1 = m.b1[0].detach().numpy() + 1j * m.b1[1].detach().numpy()
    w2 = m.w2[0].detach().numpy() + 1j * m.w2[1].detach().numpy()
    b2 = m.b2[0].detach().numpy() + 1j * m.b2[1].detach().numpy()
    z = np.fft.rfftn(x, axes=axes, norm="ortho")
    out = np.zeros_like(z)
    K, bs = w1.shape[0], w1.shape[1]
    for idx in np.ndindex(*z.shape[:-1]):
        for k in range(K):
            zk = z[idx][k * bs:(k + 1) * bs]
            h = zk @ w1[k] + b1[k]
            h = np.maximum(h.real, 0) + 1j * np.maximum(h.imag, 0)
            o = h @ w2[k] + b2[k]
            out[idx][k * bs:(k + 1) * bs] = _softshrink(o.real, shrink) + 1j * _softshrink(o.imag, shrink)
    sizes = [x.shape[a] for a in axes]
    return np.fft.irfftn(out, s=sizes, axes=axes, norm="ortho") + x


@pytest.mark.parametrize("name", ["afno", "afno_2d"])
def test_afno_matches_a_numpy_loop_over_frequencies_and_blocks(name):
    m = build_mixer(name, causal=False, n_blocks=4, shrink=0.002)
    with torch.no_grad():  # larger weights, so that ReLU and the shrinkage both act on some entries
        for p in (m.w1, m.b1, m.w2, m.b2):
            p.mul_(25)
    x = torch.randn(2, 16, 16, dtype=torch.float64)
    layout = (4, 4) if name == "afno_2d" else (16,)
    y = m(x, layout=layout)
    if name == "afno_2d":
        ref = _afno_numpy(x.numpy().reshape(2, 4, 4, 16), m, 0.002, (1, 2)).reshape(2, 16, 16)
    else:
        ref = _afno_numpy(x.numpy(), m, 0.002, (1,))
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-10, atol=1e-12)
    filtered = y - x
    assert (filtered.abs() > 1e-6).any(), "the filter did nothing: the comparison would be vacuous"


@pytest.mark.parametrize("name", ["afno", "afno_2d"])
def test_afno_is_block_diagonal_in_channels(name):
    m = build_mixer(name, causal=False, n_blocks=4)
    layout = (4, 4) if name == "afno_2d" else (16,)
    x = torch.randn(1, 16, 16, dtype=torch.float64)
    x2 = x.clone()
    x2[..., :4] += torch.randn_like(x2[..., :4])  # change only the channels of block 0
    dy = m(x2, layout=layout) - m(x, layout=layout)
    assert dy[..., :4].abs().max() > 1e-6
    torch.testing.assert_close(dy[..., 4:], torch.zeros_like(dy[..., 4:]), rtol=0, atol=1e-12)


def test_afno_soft_shrinkage_removes_small_frequency_outputs():
    m = build_mixer("afno", causal=False, shrink=10.0)  # far above every MLP output of this tiny init
    x = torch.randn(2, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(m(x, layout=(16,)), x, rtol=0, atol=0)


def test_fno_single_mode_response_is_r_times_the_mode_and_high_modes_are_cut():
    T, D, modes = 16, 3, 4
    w = torch.randn(modes, D, D, dtype=torch.complex128)
    t = torch.arange(T, dtype=torch.float64)
    for f in range(T // 2 + 1):
        for c in range(D):
            x = torch.zeros(1, T, D, dtype=torch.float64)
            x[0, :, c] = torch.cos(2 * math.pi * f * t / T)
            for form in ("fft", "quadratic"):
                y = fno_spectral_conv(x, (w,), form)[0]
                if f >= modes:
                    expect = torch.zeros(T, D, dtype=torch.float64)
                else:  # cos(θ) → Re(R_f[c, o] e^{iθ}); the DC mode has no imaginary part to carry
                    theta = 2 * math.pi * f * t / T
                    r = w[f, c]
                    expect = r.real[None, :] * torch.cos(theta)[:, None] - r.imag[None, :] * torch.sin(theta)[:, None]
                    if f == 0:
                        expect = r.real[None, :].expand(T, D)
                torch.testing.assert_close(y, expect, rtol=1e-10, atol=1e-12)


def test_fno_2d_matches_numpy_truncated_spectral_multiplication():
    H, W, D, m1 = 6, 8, 3, 2
    low = torch.randn(m1, m1, D, D, dtype=torch.complex128)
    high = torch.randn(m1, m1, D, D, dtype=torch.complex128)
    x = torch.randn(2, H, W, D, dtype=torch.float64)
    z = np.fft.rfft2(x.numpy(), axes=(1, 2), norm="ortho")
    out = np.zeros_like(z)
    for u in range(H):
        for f in range(W // 2 + 1):
            if f >= m1:
                continue
            if u < m1:
                out[:, u, f] = z[:, u, f] @ low[u, f].numpy()
            elif u >= H - m1:
                out[:, u, f] = z[:, u, f] @ high[u - (H - m1), f].numpy()
    ref = np.fft.irfft2(out, s=(H, W), axes=(1, 2), norm="ortho")
    for form in ("fft", "quadratic"):
        np.testing.assert_allclose(fno_spectral_conv(x, (low, high), form).numpy(), ref, rtol=1e-10, atol=1e-12)


def test_fno_layer_refuses_a_1d_layout_for_the_2d_form():
    m = build_mixer("fno_2d", causal=False)
    with pytest.raises(TrevoError, match="2-D layout"):
        m(torch.randn(1, 16, 16, dtype=torch.float64), layout=(16,))
