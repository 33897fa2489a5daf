"""LaMemo (trevo.models.lamemo): after three segments the kept memory is attention over every key on both
sides of each position up to the last segment's first token (a naive float64 loop over the whole stream),
and one segment from the empty memory is Transformer-XL with the same weights."""

from __future__ import annotations

import math

import torch

from tests.helpers import tiny_cfg
from trevo.ops.look_ahead_memory import merge_reference
from trevo.segments import init_memory, run_stream
from trevo.train import build

T, S = 4, 3
STREAM = ["task.name=passkey", f"task.seq_len={T}", f"task.segments={S}", "task.distance=2", "task.n_key=1",
          "model.d_model=16", "model.n_layers=2"]


def test_the_refreshed_memory_is_attention_over_both_sides():
    """With memory_len = 3T, after segments 0, 1, 2 layer 0 keeps every position. Segment 0's were read
    causally, then looked ahead over 1 … T in segment 1 and over T+1 … 2T in segment 2, merged each time;
    segment 1's causally, then over T+1 … 2T: both are attention over keys 0 … 2T (each key once). Segment
    2's are causal: keys 0 … p. Layer 0's queries, keys and values are those of the embeddings whatever the
    segment (relative positions), so the reference is one pass over the whole stream and a loop per key set."""
    task, model = build(tiny_cfg(*STREAM, "model.arch=lamemo", f"model.options.memory_len={3 * T}"))
    model = model.double().eval()
    tokens = task.train_batch(0, 2, 0)["input"]
    with torch.no_grad():
        _, memory = run_stream(model, {"input": tokens}, T, 0, S, init_memory(model, 2, "cpu", torch.float64))
        block = model.blocks[0]
        mixer, h = block.mixer, block.norm1(model._embed(tokens))
        q, k, v = mixer._project(h, 0)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + mixer.position.content_bias(q, k)
    for p in range(S * T):
        keys = range(2 * T + 1) if p < 2 * T else range(p + 1)
        for b in range(2):
            for head in range(mixer.n_heads):
                expected = merge_reference([scores[b, head, p, list(keys)]], [v[b, head, list(keys)]])
                torch.testing.assert_close(memory["0.o"][b, head, p], expected)
                torch.testing.assert_close(memory["0.z"][b, head, p],
                                           torch.logsumexp(scores[b, head, p, list(keys)], 0))


def test_one_segment_from_the_empty_memory_is_transformer_xl():
    task, lamemo = build(tiny_cfg(*STREAM, "model.arch=lamemo"))
    _, xl = build(tiny_cfg(*STREAM, "model.arch=transformer_xl"))
    lamemo.load_state_dict(xl.state_dict())  # the same parameters: LaMemo adds none
    tokens = task.train_batch(0, 2, 0)["input"][:, :T]
    torch.testing.assert_close(lamemo(tokens), xl(tokens))
