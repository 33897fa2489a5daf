"""The task base (trevo.tasks.base): a labelled-splits task draws training batches from the train split
only, the same for the same (seed, step), and evaluates a split in order, stopping where it runs out."""

from __future__ import annotations

import torch

from trevo.tasks.base import LabelledSplitsTask, TaskInfo


class _Numbered(LabelledSplitsTask):
    def __init__(self) -> None:
        self.info = TaskInfo(vocab_size=100, head="classify", seq_len=1, n_classes=100)
        self.splits = {"train": torch.arange(10), "val": torch.arange(50, 55)}

    def _split(self, split):
        x = self.splits[split]
        return x[:, None], x


def test_training_draws_from_train_and_evaluation_walks_the_split_in_order():
    task = _Numbered()
    b = task.train_batch(3, 32, 7)
    assert b["input"].shape == (32, 1) and torch.equal(b["input"][:, 0], b["target"])
    assert int(b["target"].max()) < 10 and torch.equal(task.train_batch(3, 32, 7)["target"], b["target"])
    assert not torch.equal(task.train_batch(4, 32, 7)["target"], b["target"])
    batches = [x["target"].tolist() for x in task.eval_batches("val", 2, 5)]
    assert batches == [[50, 51], [52, 53], [54]]
    assert [x["target"].tolist() for x in task.eval_batches("val", 2, 1)] == [[50, 51]]
