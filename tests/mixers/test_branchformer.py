"""Branchformer: the mixer is the concat merge of the registered softmax attention on LN(x) and the
cgMLP computed by hand (GELU up-projection, Z₁ ⊙ DWConv(LN(Z₂)) with a loop over the taps)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trevo.testing import build_mixer


@pytest.mark.parametrize("causal", [True, False])
def test_branchformer_is_the_merge_of_attention_and_a_hand_computed_cgmlp(causal):
    mixer = build_mixer("branchformer", causal)
    T = 9
    x = torch.randn(2, T, mixer.d_model, dtype=torch.float64)
    attended = mixer.attention(mixer.attn_norm(x))
    z1, z2 = F.gelu(mixer.up_proj(mixer.mlp_norm(x))).chunk(2, -1)
    z2 = mixer.gate_norm(z2)
    k = mixer.conv.conv_size
    w = mixer.conv.weight[:, 0]  # [channels, k]
    conv = torch.zeros_like(z2)
    for t in range(T):
        acc = mixer.conv.bias.clone()
        for j in range(k):
            s = t - (k - 1 - j) if causal else t + j - (k - 1) // 2
            if 0 <= s < T:
                acc = acc + w[:, j] * z2[:, s]
        conv[:, t] = acc
    local = mixer.down_proj(z1 * conv)
    expected = mixer.merge_proj(torch.cat([attended, local], -1))
    torch.testing.assert_close(mixer(x), expected, rtol=1e-10, atol=1e-12)
