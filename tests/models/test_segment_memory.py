"""Every model with a memory across segments: causal across segment boundaries, trains in `trevo train`,
and refuses what it cannot do with one clear error."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import tiny_cfg
from trevo.config import ModelConfig
from trevo.errors import IncompatibleError
from trevo.generate import generate_ids
from trevo.registry import create
from trevo.segments import init_memory, run_stream
from trevo.tasks.base import TaskInfo
from trevo.train import build, train

T, S = 6, 3
MODELS = ["transformer_xl", "rmt", "memory_transformer", "memorizing_transformer", "block_recurrent_transformer",
          "compressive_transformer", "deep_long_range_memory", "autocompressor", "memformer", "lamemo", "gmat"]
STREAM = ["task.name=passkey", f"task.seq_len={T}", f"task.segments={S}", "task.distance=2", "task.n_key=2",
          "model.d_model=16"]


@pytest.mark.parametrize("arch", MODELS)
def test_causal_across_segment_boundaries(arch):
    """Changing the token at p changes no logit before p, in its segment or the ones before; it does
    change later ones (except where there is no memory at all: memory tokens are parameters)."""
    task, model = build(tiny_cfg(*STREAM, f"model.arch={arch}"))
    model = model.double().eval()
    batch = task.train_batch(0, 2, 0)
    p = T + 3  # inside segment 1
    changed = {**batch, "input": batch["input"].clone()}
    changed["input"][:, p] = (changed["input"][:, p] + 1) % task.info.vocab_size
    with torch.no_grad():
        a, _ = run_stream(model, batch, T, 0, S, init_memory(model, 2, "cpu", torch.float64))
        b, _ = run_stream(model, changed, T, 0, S, init_memory(model, 2, "cpu", torch.float64))
    torch.testing.assert_close(a[:, :p], b[:, :p])
    assert not torch.allclose(a[:, p:2 * T], b[:, p:2 * T])
    assert torch.allclose(a[:, 2 * T:], b[:, 2 * T:]) == (arch == "memory_transformer")


@pytest.mark.parametrize("arch", ["rmt", "memorizing_transformer"])
def test_killed_run_resumes_with_the_models_memory_bitwise(tmp_path, monkeypatch, arch):
    from trevo.tasks.segment_recall import Passkey

    cfg = tiny_cfg(*STREAM, f"model.arch={arch}", "train.steps=4", "train.checkpoint_every=1",
                   "train.eval_every=2", "train.bptt_segments=2")  # 2 steps per stream: 2 segments, then 1
    straight = train(cfg, tmp_path / "a", progress=False)
    real_batch = Passkey.train_batch
    calls = []

    def killed_at_step_1(self, step, batch_size, seed):
        calls.append(step)
        if len(calls) == 2:
            raise KeyboardInterrupt  # step 1, the second part of stream 0, needs the memory of step 0
        return real_batch(self, step, batch_size, seed)

    monkeypatch.setattr(Passkey, "train_batch", killed_at_step_1)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "b", progress=False)
    monkeypatch.setattr(Passkey, "train_batch", real_batch)
    resumed = train(cfg, tmp_path / "b", resume=True, progress=False)
    assert resumed["losses"] == straight["losses"] and resumed["history"] == straight["history"]


def test_refusals_name_the_fix():
    with pytest.raises(IncompatibleError, match="n_memory_tokens"):
        build(tiny_cfg(*STREAM, "model.arch=rmt", "model.options.n_memory_tokens=0"))
    with pytest.raises(IncompatibleError, match="mem_len is spelled memory_len"):
        build(tiny_cfg(*STREAM, "model.arch=transformer_xl", "model.options.mem_len=4"))
    with pytest.raises(IncompatibleError, match="prenorm"):
        build(tiny_cfg(*STREAM, "model.arch=rmt", "model.residual.name=postnorm"))
    with pytest.raises(IncompatibleError, match="head"):
        create("model", "rmt", cfg=ModelConfig(d_model=16, n_layers=1),
               info=TaskInfo(vocab_size=16, head="classify", seq_len=8, n_classes=2))


@pytest.mark.parametrize("arch", MODELS)
def test_greedy_generation_is_the_argmax_of_the_teacher_forced_stream(arch):
    """Greedy decoding through prefill/step (the memory carried, a token at a time inside the segment, the
    memory updated when a segment fills) gives, token by token, the argmax of the logits of the whole
    stream read segment by segment as in evaluation (``run_stream``), over prompt + generated tokens. The
    prompt (8) ends inside segment 1; the 9 new tokens fill it and segment 2 and start segment 3."""
    task, model = build(tiny_cfg(*STREAM, f"model.arch={arch}", "model.n_layers=2"))
    model = model.double().eval()
    prompt = task.train_batch(0, 2, 0)["input"][:, :T + 2]
    new, _ = generate_ids(model, prompt, 9, mode="recurrent")
    stream = torch.cat([prompt, new], dim=1)
    with torch.no_grad():
        logits, _ = run_stream(model, {"input": stream}, T, 0, 3, init_memory(model, 2, "cpu", torch.float64))
    assert torch.equal(logits[:, T + 1:-1].argmax(-1), new)
    assert torch.equal(generate_ids(model, prompt, 9, mode="parallel")[0], new)
    with torch.no_grad():  # the logits themselves, not only their argmax: prefill, then a step per token
        first, state = model.prefill(prompt)
        stepped = [first[:, -1]]
        for t in new.unbind(1)[:-1]:
            out, state = model.step(t, state)
            stepped.append(out)
    torch.testing.assert_close(first, logits[:, :T + 2])
    torch.testing.assert_close(torch.stack(stepped, dim=1), logits[:, T + 1:-1])

