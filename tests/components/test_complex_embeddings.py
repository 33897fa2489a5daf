"""complex_order (Wang et al. 2020): a hand-checked embedding, the polar form r e^{i(ωp + θ)} by a float64
loop, the defining offset property f(j, p + k) = e^{iω_j k} ⊙ f(j, p) whatever p, and the stack contract
through a metaformer (prefill + steps = forward, so generation offsets the positions right)."""

from __future__ import annotations

import cmath
import math

import pytest
import torch

from trevo import testing
from trevo.config import RunConfig
from trevo.errors import TrevoError
from trevo.registry import build


def _embedding(vocab: int = 5, d: int = 6):
    torch.manual_seed(0)
    position = build("position", "complex_order", {}, d_model=d)
    position.attach(vocab_size=vocab)
    with torch.no_grad():
        position.frequency.uniform_(-2.0, 2.0)
    return position.double()


def test_a_hand_checked_word():
    position = _embedding(vocab=2, d=4)
    with torch.no_grad():
        position.frequency[1] = torch.tensor([math.pi / 2, math.pi], dtype=torch.float64)
    e = torch.tensor([[[1.0, 2.0, 0.0, 0.0]]], dtype=torch.float64)  # word 1 at position 0: 1 + 0i, 2 + 0i
    got = position.embed_words(e, torch.tensor([[1]]), torch.tensor([1]))
    # at p = 1: (1 + 0i)·e^{iπ/2} = i and (2 + 0i)·e^{iπ} = −2; laid out [Re ; Im]
    torch.testing.assert_close(got, torch.tensor([[[0.0, -2.0, 1.0, 0.0]]], dtype=torch.float64))


def _polar_loop(position, e: torch.Tensor, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """r_j cos(ω_j p + θ_j), r_j sin(ω_j p + θ_j) per complex dimension, r and θ from a_j + i b_j."""
    half = e.shape[-1] // 2
    out = torch.zeros_like(e)
    for b in range(e.shape[0]):
        for t in range(e.shape[1]):
            for i in range(half):
                z = complex(float(e[b, t, i]), float(e[b, t, half + i]))
                r, theta = abs(z), cmath.phase(z)
                omega = float(position.frequency[tokens[b, t], i].detach())
                angle = omega * float(positions[t]) + theta
                out[b, t, i], out[b, t, half + i] = r * math.cos(angle), r * math.sin(angle)
    return out


def test_equals_the_polar_form_by_a_loop():
    position = _embedding()
    tokens = torch.randint(0, 5, (2, 7))
    e = torch.randn(2, 7, 6, dtype=torch.float64)
    positions = torch.arange(3, 10)
    torch.testing.assert_close(position.embed_words(e, tokens, positions), _polar_loop(position, e, tokens, positions))


@pytest.mark.parametrize("k", [1, 5, 40])
def test_an_offset_is_a_phase_rotation_independent_of_the_position(k):
    position = _embedding()
    word = torch.tensor([[3]])
    e = torch.randn(1, 1, 6, dtype=torch.float64)

    def complex_at(p: int) -> torch.Tensor:
        f = position.embed_words(e, word, torch.tensor([p]))[0, 0]
        return torch.complex(f[:3], f[3:])

    rotation = torch.exp(1j * position.frequency[3].detach().to(torch.float64) * k)  # w(j, k) = e^{iω_j k}
    for p in (0, 2, 17, 300):
        torch.testing.assert_close(complex_at(p + k), rotation * complex_at(p))
        # and the ratio is the same at every p: the transformation does not depend on the position
        torch.testing.assert_close(complex_at(p + k) / complex_at(p), complex_at(k) / complex_at(0))


def test_the_metaformer_keeps_the_stack_contract():
    model = {"d_model": testing.D, "n_layers": 2, "mixer": "softmax_attention", "position": "complex_order"}
    testing.check_stack(RunConfig.from_dict({"model": model}).model)


def test_clear_errors():
    with pytest.raises(TrevoError, match="d_model must be even"):
        build("position", "complex_order", {}, d_model=5)
    position = build("position", "complex_order", {}, d_model=4)
    with pytest.raises(TrevoError, match="not attached|did not attach"):
        position.embed_words(torch.zeros(1, 1, 4), torch.zeros(1, 1, dtype=torch.long), torch.arange(1))
    with pytest.raises(TrevoError, match="word and its position"):
        position(torch.arange(3))
