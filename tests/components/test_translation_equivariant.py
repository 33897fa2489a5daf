"""translation_equivariant (Horn et al. 2021, strategy 1): the bias equals the paper's constrained-projection
score p_iᵀ M p_j by a loop; kernelized attention with it equals a float64 loop over (i, j) and is unchanged by
a common shift of every position; with many random features it approaches softmax over the paper's
concatenated queries [q; M p_i] and keys [k; p_j]. (The shift of the score bias itself is in
test_position_biases, registry-driven; prefill + steps there too.)"""

from __future__ import annotations

import math

import pytest
import torch

from trevo import testing
from trevo.config import RunConfig
from trevo.ops.kernelized_rpe import kernelized_rpe_fft
from trevo.ops.performer import orthogonal_gaussian, positive_features
from trevo.registry import build

H, D = 2, 8


def _position(n_scales: int = 3):
    torch.manual_seed(0)
    position = build("position", "translation_equivariant", {"n_scales": n_scales}, d_model=16)
    position.attach(n_heads=H, head_dim=D, causal=False)
    with torch.no_grad():
        position.frequency.uniform_(0.05, 2.0)
        position.alpha.normal_()
        position.beta.normal_()
    return position.double()


def test_the_bias_is_the_constrained_projection_score_by_a_loop():
    position = _position()
    got = position.bias(H, 5, 7)  # queries at positions 2 … 6 of 7
    omega, alpha, beta = (t.detach() for t in (position.frequency, position.alpha, position.beta))
    for h in range(H):
        for a, i in enumerate(range(2, 7)):
            for j in range(7):
                score = 0.0
                for s in range(len(omega)):
                    p_i = torch.stack([torch.sin(omega[s] * i), torch.cos(omega[s] * i)])
                    p_j = torch.stack([torch.sin(omega[s] * j), torch.cos(omega[s] * j)])
                    m = torch.tensor([[alpha[h, s], beta[h, s]], [-beta[h, s], alpha[h, s]]], dtype=torch.float64)
                    score += float(p_i @ m @ p_j)  # the query's features through M, the key's as they are
                assert float(got[h, a, j].detach()) == pytest.approx(score, rel=1e-10, abs=1e-12)
    causal, back = position.lag_bias(7)  # the Toeplitz layout kernelized attention reads
    torch.testing.assert_close(causal, got[:, -1, torch.arange(6, -1, -1)])  # lags 0 … 6 from the last query
    torch.testing.assert_close(back, position.bias(H, 7, 7)[:, 0, 1:])  # lags −1 … −6 from the first


def _mixer(causal: bool, **options):
    torch.manual_seed(0)
    position = build("position", "translation_equivariant", {}, d_model=16)
    m = build("mixer", "kernelized_rpe_attention", {"n_heads": H, "n_features": 6, "fft_chunk_size": 4, **options},
              d_model=16, causal=causal, position=position, max_len=8).double()
    with torch.no_grad():
        position.alpha.normal_()
        position.beta.normal_()
    return m


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("form", ["fft", "quadratic"])
def test_kernelized_attention_with_it_equals_the_loop(causal, form):
    m = _mixer(causal, form=form)
    x = torch.randn(2, 11, 16, dtype=torch.float64)  # past max_len = 8: the bias has no table to outgrow
    q, k, v = (t.detach() for t in m.qkv_heads(x))
    scale = D ** -0.25
    qf = positive_features(q * scale, m.projection, stabilise=True)
    kf = positive_features(k * scale, m.projection, stabilise=False)
    b = m.position.bias(H, 11, 11).detach()
    o = torch.zeros_like(v)
    for bi in range(2):
        for h in range(H):
            for i in range(11):
                keys = range(i + 1) if causal else range(11)
                w = [math.exp(float(b[h, i, j])) * float(qf[bi, h, i] @ kf[bi, h, j]) for j in keys]
                o[bi, h, i] = sum(wj * v[bi, h, j] for wj, j in zip(w, keys, strict=True)) / sum(w)
    torch.testing.assert_close(m(x), m.project_out(o))


def test_outputs_are_unchanged_by_a_common_shift():
    """The last 7 tokens at positions 5 … 11 (the keys before them padded away) and the same tokens at
    positions 0 … 6 give the same outputs: the weights see i − j only."""
    m = _mixer(False)
    x = torch.randn(1, 12, 16, dtype=torch.float64)
    mask = torch.tensor([[False] * 5 + [True] * 7])
    torch.testing.assert_close(m(x, padding_mask=mask)[:, 5:], m(x[:, 5:]))
    # and an absolute position would not: sinusoids added to the same tokens at 0 … 6 and at 5 … 11 differ
    pe = build("position", "sinusoidal", {}, d_model=16)
    plain = build("mixer", "kernelized_rpe_attention", {"n_heads": H, "n_features": 6}, d_model=16, causal=False,
                  max_len=16).double()
    assert not torch.allclose(plain(x[:, 5:] + pe(torch.arange(5, 12)).double()),
                              plain(x[:, 5:] + pe(torch.arange(7)).double()))


def test_many_features_approach_softmax_over_the_papers_concatenated_queries_and_keys():
    torch.manual_seed(1)
    T, d, S, m_features = 7, 4, 2, 40000
    position = build("position", "translation_equivariant", {"n_scales": S}, d_model=16)
    position.attach(n_heads=1, head_dim=d, causal=False)
    position = position.double()
    q, k, v = (torch.randn(1, 1, T, d, dtype=torch.float64) * 0.5 for _ in range(3))
    omega, alpha, beta = (t.detach() for t in (position.frequency, position.alpha[0], position.beta[0]))
    t = torch.arange(T, dtype=torch.float64)[:, None] * omega  # [T, S]
    p = torch.stack([t.sin(), t.cos()], dim=-1)  # [T, S, 2]
    m = torch.stack([torch.stack([alpha, beta], -1), torch.stack([-beta, alpha], -1)], -2)  # [S, 2, 2]
    q_cat = torch.cat([q[0, 0] / d ** 0.5, torch.einsum("tsa,sab->tsb", p, m).reshape(T, -1)], dim=-1)
    k_cat = torch.cat([k[0, 0], p.reshape(T, -1)], dim=-1)
    exact = torch.softmax(q_cat @ k_cat.T, dim=-1) @ v[0, 0]  # the paper's attention, computed exactly
    w = orthogonal_gaussian(m_features, d, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    qf, kf = positive_features(q * d ** -0.25, w, stabilise=True), positive_features(k * d ** -0.25, w, stabilise=False)
    b_causal, b_back = position.lag_bias(T)
    approx = kernelized_rpe_fft(qf, kf, v, b_causal.exp(), b_back.exp(), causal=False, block=4)
    assert (approx[0, 0] - exact).abs().max() < 0.05


def test_a_layer_takes_it_through_the_model_config():
    layers = [{"mixer": {"name": "kernelized_rpe_attention", "n_features": 8, "fft_chunk_size": 4},
               "position": "translation_equivariant"}]
    testing.check_stack(RunConfig.from_dict({"model": {"d_model": testing.D, "n_layers": 2, "layers": layers}}).model)
