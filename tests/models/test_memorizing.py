"""Memorizing Transformer: the kNN memory holds the detached (key, value) pairs of the last memory_len
tokens, passes no gradient, and one segment (an empty memory) is the base model."""

from __future__ import annotations

import torch

from tests.helpers import tiny_cfg
from trevo.segments import init_memory, run_stream
from trevo.train import build

T = 8
STREAM = ["task.name=passkey", f"task.seq_len={T}", "task.segments=3", "task.distance=2", "task.n_key=2",
          "model.d_model=16", "model.arch=memorizing_transformer", "model.options.topk=3",
          f"model.options.memory_len={2 * T}"]


def test_the_memory_is_the_last_memory_len_keys_and_values_of_the_stream():
    task, model = build(tiny_cfg(*STREAM))
    model.eval()
    (layer,) = model.with_memory
    block = model.blocks[layer]
    seen = []
    block.norm1.register_forward_hook(lambda _m, _i, out: seen.append(out))
    batch = task.train_batch(0, 2, 0)
    with torch.no_grad():
        _, memory = run_stream(model, batch, T, 0, 3, init_memory(model, 2, "cpu", torch.float32))
        _, k, v = block.mixer._project(torch.cat(seen[1:], dim=1), 0)  # the layer's inputs of segments 1 and 2
    torch.testing.assert_close(memory[f"{layer}.k"], k)
    torch.testing.assert_close(memory[f"{layer}.v"], v)


def test_the_memory_passes_no_gradient_and_the_gate_learns():
    task, model = build(tiny_cfg(*STREAM))
    tokens = task.train_batch(0, 2, 0)["input"]
    _, memory = model.forward_memory(tokens[:, :T], model.init_memory(2, "cpu", torch.float32))
    assert all(m.grad_fn is None for m in memory.values())
    leaves = {k: m.clone().requires_grad_() for k, m in memory.items()}
    logits, _ = model.forward_memory(tokens[:, T:2 * T], leaves)
    grads = torch.autograd.grad(logits.sum(), [*leaves.values(), *model.gate.values()], allow_unused=True)
    assert all(g is None for g in grads[:-1]) and grads[-1].abs().sum() > 0


def test_one_segment_is_the_base_model():
    task, model = build(tiny_cfg(*STREAM))
    _, base = build(tiny_cfg(*STREAM, "model.arch=metaformer", "model.options={}"))
    missing = base.load_state_dict(model.state_dict(), strict=False)
    assert all(k.startswith("gate.") for k in missing.unexpected_keys) and not missing.missing_keys
    tokens = task.train_batch(0, 2, 0)["input"][:, :T]
    torch.testing.assert_close(model(tokens), base(tokens))
