"""The LRU's defining properties: eigenvalues on the initial ring, γ normalisation, forms and stepping
against a float64 loop."""

from __future__ import annotations

import math

import torch

from trevo.components.mixers.lru import LRU
from trevo.ops.scan import linear_scan


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
        normalised, _ = linear_scan(log_a, bu * torch.exp(mixer.gamma_log), form="recurrent")
        raw, _ = linear_scan(log_a, bu, form="recurrent")
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
    mixer.form = "recurrent"
    torch.testing.assert_close(mixer(x), expected, rtol=1e-10, atol=1e-12)
