"""PaFi and HiWi on a byte-LM run fine-tuned to the induction task: PaFi's mask is the smallest-magnitude
entries (against a sort), only they change and the rest stay bitwise; HiWi starts as the original model,
trains only its adapters, and merges into the original architecture with the same outputs."""

from __future__ import annotations

import pytest
import torch

from trevo.api import load
from trevo.errors import TrevoError
from trevo.peft.base import fine_tune
from trevo.peft.pafi_hiwi import HiWi, PaFi, block_matrices
from trevo.registry import create


def _induction():
    return create("task", "induction", seq_len=32, vocab_size=256, eval_lengths=[32])


def _val_loss(model, task) -> float:
    batch = next(task.eval_batches("val", 16, 1))
    with torch.no_grad():
        return task.loss(model(batch["input"]), batch).item()


def test_pafi_trains_only_the_smallest_magnitude_entries(run_dir):
    model, _, _ = load(run_dir)
    before = {n: p.detach().clone() for n, p in block_matrices(model)}
    pafi = PaFi(model, density=0.02)
    everything = torch.cat([w.abs().flatten() for w in before.values()])
    k = round(0.02 * everything.numel())
    threshold = everything.sort().values[k - 1]
    for mask, w in zip(pafi.masks, before.values(), strict=True):
        assert torch.equal(mask, w.abs() <= threshold)  # no ties in random float weights
    assert pafi.trainable_count() == k
    task = _induction()
    start = _val_loss(model, task)
    fine_tune(pafi, task, steps=8, lr=3e-3)
    merged = pafi.merge()
    assert _val_loss(merged, task) < start
    changed = 0
    for (name, w), mask in zip(block_matrices(merged), pafi.masks, strict=True):
        assert torch.equal(w[~mask], before[name][~mask]), name  # outside the mask: bitwise the pre-trained value
        changed += int((w[mask] != before[name][mask]).sum())
    assert changed > 0


def test_hiwi_starts_as_the_model_and_merges_into_its_architecture(run_dir):
    model, _, _ = load(run_dir)
    original, _, _ = load(run_dir)
    tokens = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(0))
    hiwi = HiWi(model, low_rank_dim=4)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), original(tokens), rtol=0, atol=0)  # W_up = 0: W' = W
    task = _induction()
    start = _val_loss(model, task)
    pretrained = {n: p.detach().clone() for n, p in model.named_parameters() if "original" in n}
    fine_tune(hiwi, task, steps=8, lr=3e-3)
    assert all(torch.equal(p, pretrained[n]) for n, p in model.named_parameters() if "original" in n)
    with torch.no_grad():
        adapted = model(tokens)
    merged = hiwi.merge()
    assert {k: v.shape for k, v in merged.state_dict().items()} == {k: v.shape for k, v in
                                                                   original.state_dict().items()}
    with torch.no_grad():
        torch.testing.assert_close(merged(tokens), adapted)
    assert _val_loss(merged, task) < start
    assert hiwi.trainable_count() < sum(p.numel() for p in original.parameters()) // 10


def test_bad_options_are_clear_errors(run_dir):
    model, _, _ = load(run_dir)
    with pytest.raises(TrevoError, match="pafi: density"):
        PaFi(model, density=0)
    with pytest.raises(TrevoError, match="vocabulary"):
        fine_tune(HiWi(model), create("task", "induction", seq_len=32), steps=1)
