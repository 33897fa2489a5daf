"""Flowformer: the conserved flows are conserved (every source sends 1, every sink receives 1, with ε = 0),
and the outputs equal the paper's equations written with the explicit capacity matrix A = φ(Q)φ(K)ᵀ."""

from __future__ import annotations

import pytest
import torch

from trevo.ops.flowformer import causal_flow_attention, flow_attention


def _phi(t=8, seed=0):
    torch.manual_seed(seed)
    q, k = (torch.sigmoid(torch.randn(2, 2, t, 4, dtype=torch.float64)) for _ in range(2))
    return q, k, torch.randn(2, 2, t, 3, dtype=torch.float64)


def test_flow_is_conserved():
    q, k, _ = _phi()
    a = q @ k.transpose(-1, -2)  # capacities sink i ← source j
    incoming, outgoing = a.sum(-1), a.sum(-2)  # I_i, O_j
    torch.testing.assert_close((a / outgoing[..., None, :]).sum(-2), torch.ones_like(outgoing))  # each source sends 1
    torch.testing.assert_close((a / incoming[..., :, None]).sum(-1), torch.ones_like(incoming))  # each sink gets 1


def test_bidirectional_equals_the_equations():
    q, k, v = _phi()
    t = 8
    a = q @ k.transpose(-1, -2)
    incoming, outgoing = a.sum(-1), a.sum(-2)
    sink = (a / outgoing[..., None, :]).sum(-1)  # Î_i = Σ_j A_ij / O_j
    source = (a / incoming[..., :, None]).sum(-2).clamp(-1, 1)  # Ô_j = Σ_i A_ij / I_i
    comp = torch.softmax(source, -1) * t
    want = torch.sigmoid(sink)[..., None] * ((a / incoming[..., None]) @ (v * comp[..., None]))
    torch.testing.assert_close(flow_attention(q, k, v, eps=0.0), want)


def test_causal_equals_the_prefix_equations():
    """The paper's causal flows: sums over prefixes, each rescaled by the prefix length n."""
    q, k, v = _phi()
    t = 8
    m = q @ k.transpose(-1, -2)  # m_ij = φ(q_i)·φ(k_j)
    a = m.tril()  # sink i draws from sources j <= i
    n = torch.arange(1, t + 1, dtype=torch.float64)
    incoming = a.sum(-1)  # I_i
    outgoing = m.triu().sum(-2)  # O_j: source j with the sinks i <= j
    sink = (a * (n / outgoing)[..., None, :]).sum(-1) / n
    source = ((m.triu() * (n / incoming)[..., :, None]).sum(-2) / n).clamp(-1, 1)
    e = source.exp()
    comp = e / e.cumsum(-1) * n
    want = torch.sigmoid(sink)[..., None] * ((a / incoming[..., None]) @ (v * comp[..., None]))
    zero = {name: torch.zeros(2, 2, *s, dtype=torch.float64) for name, s in
            (("q_sum", (4,)), ("k_sum", (4,)), ("k_out_sum", (4,)), ("q_in_sum", (4,)), ("exp_sum", ()), ("S", (4, 3)))}
    got, _ = causal_flow_attention(q, k, v, zero, torch.zeros((), dtype=torch.long), eps=0.0)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("eps", [0.0, 1e-6])
def test_padding_is_the_shorter_sequence(eps):
    q, k, v = _phi(10)
    real = torch.ones(2, 10, dtype=torch.bool)
    real[:, 7:] = False
    torch.testing.assert_close(flow_attention(q, k, v, eps=eps, key_padding_mask=real)[:, :, :7],
                               flow_attention(q[:, :, :7], k[:, :, :7], v[:, :, :7], eps=eps))
