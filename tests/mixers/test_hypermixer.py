"""HyperMixer: the token mixing W₂σ(W₁ᵀX) with hypernetwork-made weights, computed token by token;
the causal form is the same sum over the prefix; tying shares one hypernetwork; a permutation of
the tokens changes the output only through the positions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.components.mixers.hypermixer import sinusoidal
from trevo.testing import build_mixer


def _reference(mixer, x, causal):
    T = x.shape[1]
    h = x + sinusoidal(torch.arange(T), mixer.d_model)
    w1, w2 = mixer.hyper1(h), mixer.hyper2(h)
    out = torch.zeros_like(x)
    for t in range(T):
        span = range(t + 1) if causal else range(T)
        S = sum(w1[:, s, :, None] * x[:, s, None, :] for s in span)  # Σ_s w₁,ₛ x_sᵀ: [B, d', d]
        out[:, t] = torch.einsum("br,brd->bd", w2[:, t], F.gelu(S))
    return out


def test_hypermixer_equals_the_token_sum_by_hand_both_ways():
    for causal in (False, True):
        mixer = build_mixer("hypermixer", causal)
        x = torch.randn(2, 8, mixer.d_model, dtype=torch.float64)
        torch.testing.assert_close(mixer(x), _reference(mixer, x, causal), rtol=1e-10, atol=1e-12)


def test_tied_hypernetworks_are_one_module():
    mixer = build_mixer("hypermixer", False, tied=True)
    assert mixer.hyper1 is mixer.hyper2
    assert sum(p.numel() for p in mixer.parameters()) < sum(
        p.numel() for p in build_mixer("hypermixer", False).parameters())


def test_positions_are_what_makes_the_mixing_order_aware():
    mixer = build_mixer("hypermixer", False)
    x = torch.randn(1, 6, mixer.d_model, dtype=torch.float64)
    perm = torch.tensor([3, 1, 5, 0, 2, 4])
    assert not torch.allclose(mixer(x)[:, perm], mixer(x[:, perm]))
    # Without the positions the same mixing is permutation-equivariant.
    no_pos = lambda z: torch.einsum("btr,brd->btd", mixer.hyper2(z),  # noqa: E731
                                    F.gelu(torch.einsum("btr,btd->brd", mixer.hyper1(z), z)))
    torch.testing.assert_close(no_pos(x)[:, perm], no_pos(x[:, perm]), rtol=1e-10, atol=1e-12)
