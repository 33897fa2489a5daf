"""Perceiver IO's structured outputs: multi-task decoding and multimodal auto-encoding on digits."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.config import RunConfig
from trevo.registry import create
from trevo.tasks.base import step_generator
from trevo.train import build, train

TINY = ["model.arch=perceiver_io", "model.d_model=16", "model.n_layers=1", "model.position.name=fourier",
        "model.position.n_bands=3", "model.options.n_latents=4", "model.max_len=128", "train.batch_size=4",
        "train.steps=3", "train.eval_every=3", "train.checkpoint_every=3", "train.eval_batches=2",
        "train.warmup_steps=1"]


def tiny(task: str, *more: str) -> RunConfig:
    return RunConfig().override([f"task.name={task}", *TINY, *more])


def test_digit_splits_partition_the_dataset():
    from sklearn.datasets import load_digits

    task = create("task", "digits_multitask")
    splits = [task._split(s) for s in ("train", "val", "test")]
    assert [len(y) for _, y in splits] == [1397, 200, 200]
    pixels = torch.cat([x for x, _ in splits])
    labels = torch.cat([y for _, y in splits])
    data = load_digits()
    key = lambda x, y: sorted(map(tuple, torch.cat([x, y[:, None]], 1).tolist()))  # noqa: E731
    assert key(pixels, labels) == key(torch.as_tensor(data.data).long(), torch.as_tensor(data.target))


def test_multitask_queries_decode_each_target_on_its_own():
    task, model = build(tiny("digits_multitask"))
    model = model.double().eval()
    batch = task.train_batch(0, 4, 0)
    logits = model(batch["input"])
    assert logits.shape == (4, 2, 10)
    assert torch.isinf(logits[:, 1, 2:]).all() and torch.isfinite(logits[:, 0]).all()
    with torch.no_grad():
        model.queries[1].add_(1.0)  # another query for target 2 leaves target 1's logits alone
    after = model(batch["input"])
    torch.testing.assert_close(after[:, 0], logits[:, 0], rtol=0, atol=1e-13)
    assert (after[:, 1, :2] - logits[:, 1, :2]).abs().max() > 1e-6
    mirrored = batch["input"].view(4, 8, 8).flip(-1).reshape(4, 64)
    flipped = batch["target"][:, 1] == 1
    unflipped = task._split("train")[0][torch.randint(0, 1397, (4,), generator=step_generator(0, 0))]
    assert torch.equal(torch.where(flipped[:, None], mirrored, batch["input"]), unflipped)


def test_multimodal_inputs_are_padded_with_their_modality_embedding():
    task, model = build(tiny("digits_autoencode"))
    batch = task.train_batch(0, 3, 0)
    enc = model.encoder
    x = enc.embed_inputs(batch["input"])
    image, label = enc.inputs.adapters
    assert x.shape == (3, 65, max(image.width, label.width) + 4)
    torch.testing.assert_close(x[:, :64, image.width:], enc.inputs.pads[0].expand(3, 64, -1))
    torch.testing.assert_close(x[:, 64:, label.width:], enc.inputs.pads[1].expand(3, 1, -1))
    assert model(batch["input"]).shape == (3, 65, 28)
    hidden = batch["input"][:, 64] == 27
    assert torch.equal(batch["target"][:, :64], batch["input"][:, :64])
    assert not torch.equal(batch["input"][hidden, 64], batch["target"][hidden, 64])


@pytest.mark.parametrize("name,metric", [("digits_multitask", "accuracy"), ("digits_autoencode", "label_accuracy")])
def test_structured_tasks_train_end_to_end(tmp_path, name, metric):
    result = train(tiny(name), tmp_path, progress=False)
    assert math.isfinite(result["final"]["loss"]) and 0 <= result["final"][metric] <= 1
