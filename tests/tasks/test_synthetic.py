"""Generated tasks (trevo.tasks.synthetic): evaluation sets are cached atomically under the given
directory and equal the uncached ones; a length-generalisation task's sets are fixed per length and its
accuracy is the mean over the lengths evaluated."""

from __future__ import annotations

import torch

from tests.helpers import same_batches
from trevo.registry import create
from trevo.tasks.base import TaskInfo
from trevo.tasks.synthetic import LengthGeneralisationTask


def test_eval_sets_cache_atomically_under_the_given_directory(tmp_path):
    task = create("task", "listops", cache_dir=str(tmp_path / "cache"))
    first = next(task.eval_batches("val", 8, 1))
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0].suffix == ".safetensors"
    again = create("task", "listops", cache_dir=str(tmp_path / "cache"))
    assert same_batches(first, next(again.eval_batches("val", 8, 1)))
    assert same_batches(first, next(create("task", "listops").eval_batches("val", 8, 1)))


class _Counting(LengthGeneralisationTask):
    """Examples whose tokens are a random start then counting up: the length and the stream are visible."""

    def __init__(self) -> None:
        self.seq_len, self.eval_lengths = 4, (4, 9)
        self.info = TaskInfo(vocab_size=100, head="lm", seq_len=4)

    def make(self, gen, n, length):
        start = torch.randint(0, 50, (n, 1), generator=gen)
        tokens = start + torch.arange(length)
        return {"input": tokens, "target": tokens + 1}


def test_length_generalisation_sets_are_per_length_and_finalize_averages_the_lengths():
    task = _Counting()
    batches = list(task.eval_batches("val", 3, 2))
    assert [b["input"].shape for b in batches] == [(3, 4)] * 2 + [(3, 9)] * 2
    # a length's set does not depend on the other lengths asked for, nor on the batch size
    task.eval_lengths = (9,)
    assert torch.equal(next(task.eval_batches("val", 6, 1))["input"], torch.cat([b["input"] for b in batches[2:]]))
    assert task.train_batch(0, 2, 5)["input"].shape == (2, 4)
    totals = {"nll": 2.0, "count": 4.0, "correct": 3.0, "correct@4": 1.0, "count@4": 2.0, "correct@9": 2.0,
              "count@9": 2.0}
    task.eval_lengths = (4, 9, 16)  # 16 was not evaluated: no acc@16, and it does not count in the mean
    metrics = task.finalize(totals)
    assert metrics == {"loss": 0.5, "accuracy": 0.75, "acc@4": 0.5, "acc@9": 1.0}
