"""Synthesizer: dense and random variants equal their formulas; random attention ignores the input; the
factorized variants: the tiled product of the two factors (dense) and low-rank logits (random, rank <= k)."""

from __future__ import annotations

import pytest
import torch

from trevo.registry import build, create

D, T, H = 8, 7, 2


def _formula(mixer, x, logits, causal):
    v = (x @ mixer.value.weight.T).unflatten(-1, (H, D // H))  # [B, T, H, Dh]
    y = torch.zeros_like(v)
    for h in range(H):
        for t in range(T):
            keys = t + 1 if causal else T
            w = torch.softmax(logits[:, h, t, :keys], dim=-1)  # [B, keys]
            y[:, t, h] = (w[..., None] * v[:, :keys, h]).sum(1)
    return y.flatten(2) @ mixer.out_proj.weight.T


@pytest.mark.parametrize("causal", [True, False])
def test_dense_synthesizer_equals_its_formula(causal):
    torch.manual_seed(0)
    mixer = create("mixer", "synthesizer_dense", d_model=D, causal=causal, max_len=10, n_heads=H).double()
    x = torch.randn(2, T, D, dtype=torch.float64)
    lin1, lin2 = mixer.synth[0], mixer.synth[2]
    b = torch.relu(x @ lin1.weight.T + lin1.bias) @ lin2.weight.T + lin2.bias  # [B, T, H·ℓ]
    logits = b.unflatten(-1, (H, 10)).transpose(1, 2)[..., :T]
    torch.testing.assert_close(mixer(x), _formula(mixer, x, logits, causal))


@pytest.mark.parametrize("causal", [True, False])
def test_random_synthesizer_equals_its_formula_and_ignores_the_input(causal):
    torch.manual_seed(0)
    mixer = create("mixer", "synthesizer_random", d_model=D, causal=causal, max_len=10, n_heads=H).double()
    x = torch.randn(2, T, D, dtype=torch.float64)
    logits = mixer.random_logits[None, :, :T, :T].expand(2, -1, -1, -1)
    torch.testing.assert_close(mixer(x), _formula(mixer, x, logits, causal))
    # The attention weights are the same for any input: with identity value/output maps the output is
    # softmax(R) X, linear in X.
    with torch.no_grad():
        mixer.value.weight.copy_(torch.eye(D))
        mixer.out_proj.weight.copy_(torch.eye(D))
    x1, x2 = torch.randn(2, T, D, dtype=torch.float64), torch.randn(2, T, D, dtype=torch.float64)
    torch.testing.assert_close(mixer(x1 + 3 * x2), mixer(x1) + 3 * mixer(x2))
    assert mixer.logits(x1, 0, T).shape[0] == 1  # no batch dimension: nothing of the input enters


@pytest.mark.parametrize("causal", [True, False])
def test_factorized_dense_is_the_tiled_product(causal):
    torch.manual_seed(0)
    m = build("mixer", "synthesizer_factorized_dense", {"n_heads": H, "factor": 3}, d_model=D, causal=causal,
              max_len=10).double()
    assert (m.factor_a, m.factor_b) == (3, 4)  # a·b = 12 >= ℓ = 10
    x = torch.randn(2, T, D, dtype=torch.float64)
    a = m.synth_a(x).unflatten(-1, (H, 3)).transpose(1, 2)
    b = m.synth_b(x).unflatten(-1, (H, 4)).transpose(1, 2)
    logits = torch.zeros(2, H, T, T, dtype=torch.float64)
    for j in range(T):  # H_A(A) = [A, A, A, A], H_B(B) = [B_0, B_0, B_0, B_1, …]
        logits[..., j] = a[..., j % 3] * b[..., j // 3]
    torch.testing.assert_close(m(x), _formula(m, x, logits, causal))


@pytest.mark.parametrize("causal", [True, False])
def test_factorized_random_is_low_rank_and_ignores_the_input(causal):
    torch.manual_seed(0)
    m = build("mixer", "synthesizer_factorized_random", {"n_heads": H, "low_rank_dim": 2}, d_model=D,
              causal=causal, max_len=10).double()
    x = torch.randn(2, T, D, dtype=torch.float64)
    r = m.random_left @ m.random_right.transpose(-1, -2)  # [H, ℓ, ℓ]
    assert int(torch.linalg.matrix_rank(r[0])) == 2
    torch.testing.assert_close(m(x), _formula(m, x, r[None, :, :T, :T].expand(2, -1, -1, -1), causal))
