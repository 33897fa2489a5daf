"""Luna: bidirectional pack/unpack equals the two attentions written out; the causal variant equals its
running-mean definition step by step; the packed length bounds the state whatever the sequence length."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from trevo.registry import build


def _mixer(causal):
    torch.manual_seed(0)
    return build("mixer", "luna", {"low_rank_dim": 3, "n_heads": 1}, d_model=4, causal=causal).double()


def test_bidirectional_pack_then_unpack():
    m = _mixer(False)
    x = torch.randn(2, 7, 4, dtype=torch.float64)
    pq = m.pack_q(m.packed_seq)  # [l, d]
    packed = torch.softmax(pq @ x.transpose(1, 2) / 2, dim=-1) @ x  # [B, l, d]
    k, v = m.kv_proj(packed).chunk(2, dim=-1)
    y = torch.softmax(m.q_proj(x) @ k.transpose(1, 2) / 2, dim=-1) @ v
    torch.testing.assert_close(m(x), m.out_proj(y))


def test_causal_is_the_running_mean_definition():
    m = _mixer(True)
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    pq = m.pack_q(m.packed_seq)
    q, (k, v) = m.q_proj(x), m.kv_proj(x).chunk(2, dim=-1)
    want = []
    for t in range(6):
        a = F.elu(x[:, : t + 1] @ pq.T / 2) + 1  # [B, t+1, l]
        k_p = a.transpose(1, 2) @ k[:, : t + 1] / (t + 1)  # [B, l, d]
        v_p = a.transpose(1, 2) @ v[:, : t + 1] / (t + 1)
        probs = torch.softmax((k_p @ q[:, t, :, None])[..., 0] / math.sqrt(4), dim=-1)
        want.append((probs[:, None] @ v_p)[:, 0])
    torch.testing.assert_close(m(x), m.out_proj(torch.stack(want, 1)))


def test_the_causal_state_does_not_grow():
    m = _mixer(True)
    _, s1 = m.prefill(torch.randn(1, 5, 4, dtype=torch.float64))
    _, s2 = m.prefill(torch.randn(1, 50, 4, dtype=torch.float64))
    assert {k: v.shape for k, v in s1.items()} == {k: v.shape for k, v in s2.items()}
