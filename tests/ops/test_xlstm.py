"""xLSTM's cells: the stabiliser is the recurrence m_t = max(log f_t + m_{t−1}, ĩ_t); the stabilised mLSTM and
sLSTM cells equal float64 loops of the paper's *unstabilised* equations, and stay finite in float32 with
input gates whose exponentials overflow float32."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.ops.xlstm import mlstm, slstm, stabiliser


def test_stabiliser_is_the_max_recurrence():
    torch.manual_seed(0)
    log_f, log_i, m0 = F.logsigmoid(torch.randn(2, 3, 50)), torch.randn(2, 3, 50) * 5, torch.randn(2, 3)
    m, expected = m0, []
    for t in range(50):
        m = torch.maximum(log_f[..., t] + m, log_i[..., t])
        expected.append(m)
    torch.testing.assert_close(stabiliser(log_f, log_i, m0, chunk_size=7), torch.stack(expected, dim=-1))


def mlstm_unstabilised(q, k, v, f, i):
    """C_t = f_t C_{t−1} + i_t v_t k_tᵀ, n_t = f_t n_{t−1} + i_t k_t (k/√d), h_t = C_t q_t / max(|n_tᵀ q_t|, 1)."""
    B, H, T, D = q.shape
    C, n, hs = q.new_zeros(B, H, D, v.shape[-1]), q.new_zeros(B, H, D), []
    for t in range(T):
        kt = k[:, :, t] / D ** 0.5
        C = f[:, :, t, None, None] * C + i[:, :, t, None, None] * kt[..., :, None] * v[:, :, t, None, :]
        n = f[:, :, t, None] * n + i[:, :, t, None] * kt
        num = torch.einsum("bhk,bhkv->bhv", q[:, :, t], C)
        den = (n * q[:, :, t]).sum(-1, keepdim=True).abs().clamp(min=1)
        hs.append(num / den)
    return torch.stack(hs, dim=2)


def mlstm_inputs(dtype, i_shift):
    torch.manual_seed(1)
    B, H, T, D = 2, 2, 29, 4
    q, k, v = (torch.randn(B, H, T, D, dtype=torch.float64) for _ in range(3))
    f_pre, i_pre = torch.randn(B, H, T, dtype=torch.float64) + 2, torch.randn(B, H, T, dtype=torch.float64) + i_shift
    state = {"C": torch.zeros(B, H, D, D), "n": torch.zeros(B, H, D), "m": torch.zeros(B, H)}
    return (q, k, v, f_pre, i_pre), {n: s.to(dtype) for n, s in state.items()}


def test_stabilised_mlstm_equals_the_unstabilised_cell_in_every_form():
    (q, k, v, f_pre, i_pre), state = mlstm_inputs(torch.float64, 0.0)
    expected = mlstm_unstabilised(q, k, v, torch.sigmoid(f_pre), i_pre.exp())
    for form in ("quadratic", "chunk", "recurrent"):
        h, _ = mlstm(q, k, v, F.logsigmoid(f_pre), i_pre, **state, form=form, chunk_size=8, eps=0.0)
        torch.testing.assert_close(h, expected, rtol=1e-10, atol=1e-10)


def test_mlstm_with_overflowing_input_gates_stays_finite_and_exact_in_float32():
    """ĩ around 90: exp(ĩ) ≈ 1e39 overflows float32; the stabilised cell does not form it. (float32 holds
    numbers near 90 to ~1e-5, so m and the gates carry that error: 1e-3 of the output's scale.)"""
    (q, k, v, f_pre, i_pre), state = mlstm_inputs(torch.float32, 90.0)
    expected = mlstm_unstabilised(q, k, v, torch.sigmoid(f_pre), i_pre.exp())
    for form in ("quadratic", "chunk", "recurrent"):
        h, (C, n, m) = mlstm(q.float(), k.float(), v.float(), F.logsigmoid(f_pre).float(), i_pre.float(), **state,
                             form=form, chunk_size=8, eps=0.0)
        assert torch.isfinite(h).all() and torch.isfinite(C).all() and (m > 80).all()
        assert (h.double() - expected).abs().max() < 1e-3 * expected.abs().max()


def slstm_unstabilised(wx, R):
    """z, i, f, o = W x + R h_{t−1}; c_t = σ(f̃) c + exp(ĩ) tanh(z̃), n_t = σ(f̃) n + exp(ĩ), h = σ(õ) c / n."""
    B, T, _, H, D = wx.shape
    c, n, h = (wx.new_zeros(B, H, D) for _ in range(3))
    hs = []
    for t in range(T):
        pre = wx[:, t] + torch.einsum("bhd,ghde->bghe", h, R)
        c = torch.sigmoid(pre[:, 2]) * c + pre[:, 1].exp() * torch.tanh(pre[:, 0])
        n = torch.sigmoid(pre[:, 2]) * n + pre[:, 1].exp()
        h = torch.sigmoid(pre[:, 3]) * c / n
        hs.append(h)
    return torch.stack(hs, dim=1)


def test_stabilised_slstm_equals_the_unstabilised_cell_and_survives_overflowing_gates():
    torch.manual_seed(2)
    B, T, H, D = 2, 23, 2, 3
    wx, R = torch.randn(B, T, 4, H, D, dtype=torch.float64), torch.randn(4, H, D, D, dtype=torch.float64) / 2
    zeros = {n: torch.zeros(B, H, D, dtype=torch.float64) for n in "cnmh"}
    h, _ = slstm(wx, R, **zeros)
    torch.testing.assert_close(h, slstm_unstabilised(wx, R), rtol=1e-10, atol=1e-10)
    wx[:, :, 1] += 95.0  # exp(ĩ) past float32's range
    h32, state = slstm(wx.float(), R.float(), **{n: z.float() for n, z in zeros.items()})
    assert torch.isfinite(h32).all() and all(torch.isfinite(s).all() for s in state)
    torch.testing.assert_close(h32.double(), slstm_unstabilised(wx, R), rtol=1e-4, atol=1e-5)


