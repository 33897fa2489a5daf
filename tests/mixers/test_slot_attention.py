"""Slot Attention: Algorithm 1 written out slot by slot; permuting the tokens permutes the outputs; the
slots compete (each token's assignment sums to 1 over the slots)."""

from __future__ import annotations

import torch

from trevo.registry import build


def _mixer():
    torch.manual_seed(0)
    return build("mixer", "slot_attention", {"n_slots": 3, "n_iter": 2}, d_model=6, causal=False).double()


def test_equals_algorithm_one():
    m = _mixer()
    x = torch.randn(1, 7, 6, dtype=torch.float64)
    inputs = m.norm_inputs(x[0])
    k, v = inputs @ m.kv_proj.weight[:6].T, inputs @ m.kv_proj.weight[6:].T
    slots = m.slots_init.clone()
    for _ in range(2):
        q = m.q_proj(m.norm_slots(slots))
        attn = torch.softmax(k @ q.T / 6 ** 0.5, dim=1) + 1e-8  # [T, K], normalised over the slots
        updates = torch.stack([(attn[:, s, None] * v).sum(0) / attn[:, s].sum() for s in range(3)])
        slots = m.gru(updates, slots)
        slots = slots + m.mlp(m.norm_mlp(slots))
    read = torch.softmax(k @ m.q_proj(m.norm_slots(slots)).T / 6 ** 0.5, dim=1) @ slots
    torch.testing.assert_close(m(x)[0], m.out_proj(read))


def test_permutation_equivariant_and_competitive():
    m = _mixer()
    x = torch.randn(2, 9, 6, dtype=torch.float64)
    perm = torch.randperm(9)
    torch.testing.assert_close(m(x[:, perm]), m(x)[:, perm])
    k, _ = m.kv_proj(m.norm_inputs(x)).chunk(2, dim=-1)
    torch.testing.assert_close(m.assignment(k, m.slots_init.expand(2, -1, -1)).sum(-1),
                               torch.ones(2, 9, dtype=torch.float64))
