"""ChunkFormer: each stage of the stack gets its chunk size; inside a chunk it is block-local attention."""

from __future__ import annotations

import torch

from trevo.components.mixers.chunkformer import stage_chunk_size
from trevo.ops.local_attention import block_local_attention
from trevo.registry import build


def test_stages_split_the_layers_by_hand():
    sizes = (8, 32, 128)
    # 6 layers in 3 stages of 2: 8, 8, 32, 32, 128, 128
    assert [stage_chunk_size(sizes, i, 6) for i in range(6)] == [8, 8, 32, 32, 128, 128]
    # 4 layers in 3 stages: ⌊3i/4⌋ = 0, 0, 1, 2
    assert [stage_chunk_size(sizes, i, 4) for i in range(4)] == [8, 8, 32, 128]


def test_a_layer_attends_inside_its_stage_chunks():
    torch.manual_seed(0)
    mixer = build("mixer", "chunkformer", {"chunk_sizes": (2, 5)}, d_model=8, causal=False, layer_idx=1,
                  n_layers=2).double()
    assert mixer.block_size == 5
    x = torch.randn(2, 12, 8, dtype=torch.float64)
    q, k, v = (t.unflatten(-1, (4, 2)).transpose(1, 2) for t in mixer.qkv(x).chunk(3, dim=-1))
    expected = mixer.out_proj(block_local_attention(q, k, v, 5, causal=False).transpose(1, 2).flatten(2))
    torch.testing.assert_close(mixer(x), expected)
    # position 4 (chunk 0) does not depend on position 5 (chunk 1)
    x2 = x.clone()
    x2[:, 5:] += 1.0
    torch.testing.assert_close(mixer(x2)[:, :5], mixer(x)[:, :5])
