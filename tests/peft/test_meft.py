"""MEFT: each coupling is exactly invertible (inputs rebuilt from outputs, float64), the memory-efficient
backward (activations recomputed) gives plain autograd's gradients, the starting point approaches the
pre-trained model as λ → 0, and fine-tuning from a byte-LM run to the induction task trains only the
adapters, leaving the original model bitwise unchanged."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import tiny_cfg
from trevo.api import load
from trevo.errors import TrevoError
from trevo.peft.base import fine_tune
from trevo.peft.meft import MEFT
from trevo.registry import create
from trevo.train import build


def _model():
    torch.manual_seed(0)
    return build(tiny_cfg("model.n_layers=3"))[1].double()


TOKENS = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(1))


def test_every_coupling_is_exactly_invertible():
    meft = MEFT(_model(), lam=0.1)
    x1, x2 = torch.randn(2, 2, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        for layer in meft.layers:
            y1, y2 = layer(x1, x2)
            r1, r2 = layer.inverse(y1, y2)
            torch.testing.assert_close((r1, r2), (x1, x2), rtol=0, atol=1e-10)
            x1, x2 = y2, y1


def test_the_memory_efficient_backward_equals_autograd():
    meft = MEFT(_model(), lam=0.5).train()
    meft.model.requires_grad_(False)  # as fine_tune does: only the adapters train
    grads = []
    for efficient in (True, False):
        meft.memory_efficient = efficient
        for p in meft.parameters():
            p.grad = None
        meft(TOKENS).square().mean().backward()
        # the last layer's G feeds only the unused y2 stream: no gradient (None) in plain autograd, zeros here
        grads.append([torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in meft.parameters()])
    for efficient, plain in zip(*grads, strict=True):
        torch.testing.assert_close(efficient, plain, rtol=1e-9, atol=1e-12)
    assert all(p.grad is None for p in meft.model.parameters())  # the pre-trained weights get no gradient


def test_the_starting_point_approaches_the_pretrained_model_as_lambda_shrinks():
    model = _model().eval()
    with torch.no_grad():
        reference = model(TOKENS)
        gaps = []
        for lam in (1e-1, 1e-3, 1e-5):
            meft = MEFT(model, lam=lam)
            for p in meft.parameters():
                p.zero_()  # adapters at 0: only λ separates MEFT from the pre-trained model
            gaps.append((meft.eval()(TOKENS) - reference).abs().max().item())
    assert gaps[1] < gaps[0] / 30 and gaps[2] < gaps[1] / 30  # the gap is O(λ)


def test_fine_tuning_trains_only_the_adapters(run_dir):
    model, _, _ = load(run_dir)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    task = create("task", "induction", seq_len=32, vocab_size=256, eval_lengths=[32])
    meft = MEFT(model)
    batch = next(task.eval_batches("val", 16, 1))

    def val_loss() -> float:
        with torch.no_grad():
            return task.loss(meft.eval()(batch["input"]), batch).item()

    start = val_loss()
    fine_tune(meft, task, steps=8, lr=3e-3)
    assert val_loss() < start
    assert all(torch.equal(v, original[k]) for k, v in meft.merge().state_dict().items())
    with pytest.raises(TrevoError, match="lam > 0"):
        MEFT(model, lam=0)
