"""The diagonal linear scan (trevo.ops.scan) and the LRU's defining properties."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.components.mixers.lru import LRU
from trevo.ops.scan import linear_scan_chunked, linear_scan_doubling, linear_scan_sequential


def _loop(a: torch.Tensor, b: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """An independent float64 loop over h_t = a_t h_{t-1} + b_t (a given directly, not in log space)."""
    out = []
    for t in range(b.shape[1]):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    return torch.stack(out, 1)


@pytest.mark.parametrize("complex_decay", [False, True])
@pytest.mark.parametrize("time_invariant", [False, True])
def test_chunked_scan_equals_the_sequential_recurrence(complex_decay, time_invariant):
    torch.manual_seed(0)
    B, T, N = 2, 23, 3
    shape = (1, 1, N) if time_invariant else (B, T, N)
    log_a = -torch.rand(shape, dtype=torch.float64) * 2
    if complex_decay:
        log_a = torch.complex(log_a, torch.randn(shape, dtype=torch.float64))
        b = torch.randn(B, T, N, dtype=torch.complex128)
        h0 = torch.randn(B, N, dtype=torch.complex128)
    else:
        b = torch.randn(B, T, N, dtype=torch.float64)
        h0 = torch.randn(B, N, dtype=torch.float64)
    log_a.requires_grad_(True)
    b.requires_grad_(True)
    reference = _loop(torch.exp(log_a).expand(B, T, N), b, h0)
    seq, seq_last = linear_scan_sequential(log_a, b, h0)
    chunked, last = linear_scan_chunked(log_a, b, h0, chunk_size=5)
    doubled, doubled_last = linear_scan_doubling(log_a, b, h0)
    torch.testing.assert_close(doubled, reference, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(doubled_last, reference[:, -1], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(seq, reference, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(chunked, reference, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(last, reference[:, -1])
    torch.testing.assert_close(seq_last, reference[:, -1])
    weights = torch.randn_like(reference)
    g_ref = torch.autograd.grad((reference * weights.conj()).real.sum(), (log_a, b))
    g_chunk = torch.autograd.grad((chunked * weights.conj()).real.sum(), (log_a, b))
    g_doubled = torch.autograd.grad((doubled * weights.conj()).real.sum(), (log_a, b))
    for g1, g2, g3 in zip(g_ref, g_chunk, g_doubled, strict=True):
        torch.testing.assert_close(g1, g2, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(g1, g3, rtol=1e-9, atol=1e-11)


def test_chunked_scan_is_stable_for_fast_decays():
    # exp(cumsum) underflows to 0 over a long chunk; a division by the cumulative product would give nan.
    log_a = torch.full((1, 400, 2), -5.0, dtype=torch.float64)
    b = torch.ones(1, 400, 2, dtype=torch.float64)
    for h, _ in (linear_scan_chunked(log_a, b, chunk_size=400), linear_scan_doubling(log_a, b)):
        assert torch.isfinite(h).all()
        torch.testing.assert_close(h[0, -1], torch.full((2,), 1 / (1 - math.exp(-5.0)), dtype=torch.float64))


def test_lru_eigenvalues_lie_on_the_initial_ring():
    torch.manual_seed(0)
    r_min, r_max, max_phase = 0.5, 0.9, math.pi / 4
    mixer = LRU(32, causal=True, d_state=512, r_min=r_min, r_max=r_max, max_phase=max_phase)
    lam = torch.exp(mixer.log_lambda().detach().to(torch.complex128))
    modulus, phase = lam.abs(), torch.exp(mixer.theta_log.detach().double())
    assert modulus.min() >= r_min - 1e-6 and modulus.max() <= r_max + 1e-6
    assert phase.min() >= 0 and phase.max() <= max_phase + 1e-6
    # Uniform on the ring in area: |λ|² is uniform on [r_min², r_max²], so its mean is the midpoint.
    assert abs(float((modulus ** 2).mean()) - (r_min ** 2 + r_max ** 2) / 2) < 0.02
    # γ starts at (1 − |λ|²)^{1/2}.
    torch.testing.assert_close(torch.exp(mixer.gamma_log.detach().double()), (1 - modulus ** 2).sqrt(),
                               rtol=1e-5, atol=1e-6)


def test_gamma_keeps_the_state_variance_bounded_on_white_noise():
    torch.manual_seed(0)
    mixer = LRU(8, causal=True, d_state=16, r_min=0.95, r_max=0.99).double()
    u = torch.randn(128, 1500, 8, dtype=torch.float64)
    with torch.no_grad():
        bu = torch.complex(u @ mixer.B_re.T, u @ mixer.B_im.T)
        log_a = mixer.log_lambda()
        normalised, _ = linear_scan_sequential(log_a, bu * torch.exp(mixer.gamma_log))
        raw, _ = linear_scan_sequential(log_a, bu)
    input_var = bu.abs().square().mean(dim=(0, 1))
    # Past the transient, E|x_j|² = γ_j² E|Bu_j|² / (1 − |λ_j|²) = E|Bu_j|²: variance is preserved.
    ratio = normalised[:, 1000:].abs().square().mean(dim=(0, 1)) / input_var
    assert ((ratio > 0.6) & (ratio < 1.5)).all(), ratio
    # Without γ it grows as 1 / (1 − |λ|²), which is large near the unit circle.
    raw_ratio = raw[:, 1000:].abs().square().mean(dim=(0, 1)) / input_var
    assert raw_ratio.max() > 20, raw_ratio


def test_lru_forms_and_stepping_match_a_float64_loop():
    torch.manual_seed(0)
    mixer = LRU(6, causal=True, d_state=5, chunk_size=4).double()
    x = torch.randn(2, 11, 6, dtype=torch.float64)
    lam = torch.exp(mixer.log_lambda())
    gamma = torch.exp(mixer.gamma_log)
    B = torch.complex(mixer.B_re, mixer.B_im)
    C = torch.complex(mixer.C_re, mixer.C_im)
    h = torch.zeros(2, 5, dtype=torch.complex128)
    ys = []
    for t in range(11):
        h = lam * h + gamma * (x[:, t].to(torch.complex128) @ B.T)
        ys.append((h @ C.T).real + mixer.D * x[:, t])
    expected = torch.stack(ys, 1)
    torch.testing.assert_close(mixer(x), expected, rtol=1e-10, atol=1e-12)
    mixer.impl = "recurrent"
    torch.testing.assert_close(mixer(x), expected, rtol=1e-10, atol=1e-12)
