"""Generated tasks (trevo.tasks.synthetic): evaluation sets are cached atomically under the given
directory and equal the uncached ones; a length-generalisation task's sets are fixed per length and its
accuracy is the mean over the lengths evaluated."""

from __future__ import annotations

import warnings

import pytest
import torch

from tests.helpers import same_batches
from trevo.registry import create
from trevo.tasks.base import TaskInfo
from trevo.tasks.mqar import VocabularyWarning
from trevo.tasks.synthetic import GeneratedTask, LengthGeneralisationTask, TaskParameterError


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


# -- fixed-size training sets (task.train_size) ------------------------------------------------------------

class _Ids(GeneratedTask):
    """Examples that are one random 40-bit id each (distinct with near certainty): a row names its example."""

    def __init__(self, train_size=None, test_size=None, cache_dir=None):
        self.params = {}
        self.info = TaskInfo(vocab_size=2, head="classify", seq_len=1, n_classes=2)
        self.fixed_sets("ids", train_size, test_size, cache_dir)

    def make(self, gen, n):
        return {"input": torch.randint(0, 2**40, (n, 1), generator=gen), "target": torch.zeros(n, dtype=torch.long)}


def _ids(batch):
    return batch["input"][:, 0].tolist()


def test_a_fixed_training_set_is_one_set_per_seed_read_in_resumable_epochs(tmp_path):
    task = _Ids(train_size=100, cache_dir=str(tmp_path))
    members = _ids(task.train_set(0))
    assert len(set(members)) == 100
    assert members == _ids(_Ids(train_size=100).train_set(0))  # the same seed: the same set, cached or not
    assert not set(members) & set(_ids(task.train_set(1)))  # another seed: another set
    assert len(list(tmp_path.iterdir())) == 2  # each seed's set written once into the cache
    assert _ids(_Ids(train_size=100, cache_dir=str(tmp_path)).train_set(0)) == members
    # Batches of 30 straddle the epochs: every window of 100 positions is one epoch, each example once.
    stream = [i for step in range(10) for i in _ids(task.train_batch(step, 30, 0))]
    epochs = [stream[e * 100:(e + 1) * 100] for e in range(3)]
    assert all(sorted(e) == sorted(members) for e in epochs)
    assert epochs[0] != epochs[1]  # reshuffled every epoch
    # A batch is a function of (seed, step) alone: asked for out of order, by a fresh task (a resumed run).
    assert _ids(_Ids(train_size=100).train_batch(7, 30, 0)) == stream[210:240]
    assert task.epochs(10, 30) == 3.0 and "100 examples per seed, 3 epochs" in task.describe_data(10, 30)
    assert "fresh examples every step" in _Ids().describe_data(10, 30)


def test_fixed_eval_sets_have_test_size_examples_whatever_the_batch_count():
    task = _Ids(test_size=70)
    batches = list(task.eval_batches("test", 32, 1))
    assert [len(b["input"]) for b in batches] == [32, 32, 6]
    assert _ids({"input": torch.cat([b["input"] for b in batches])}) == _ids(_Ids().eval_set("test", 70))


def test_listops_deduplicates_and_keeps_its_splits_disjoint_as_lra():
    # Trees of exactly one operator over two digits: 4 × 10 × 10 = 400 distinct examples in all.
    small = dict(min_length=2, max_length=5, max_depth=2, max_args=2)
    task = create("task", "listops", train_size=200, test_size=40, **small)
    keys = {split: [bytes(r) for r in task.fixed_eval_set(split)["input"].numpy().astype("int64")]
            for split in ("val", "test")}
    train = [bytes(r) for r in task.train_set(0)["input"].numpy().astype("int64")]
    assert len(set(train)) == 200 and len(set(keys["val"])) == len(set(keys["test"])) == 40
    assert not set(train) & (set(keys["val"]) | set(keys["test"])) and not set(keys["val"]) & set(keys["test"])
    raw = create("task", "listops", **small).eval_set("val", 200)["input"]
    assert len({bytes(r) for r in raw.numpy()}) < 200  # without deduplication, 200 draws repeat trees
    with pytest.raises(TaskParameterError, match="distinct examples"):
        create("task", "listops", train_size=390, test_size=40, **small).train_set(0)


def test_sizes_are_checked_and_mqar_warns_where_zoology_refuses_the_vocabulary():
    with pytest.raises(TaskParameterError, match="train_size must be a positive"):
        create("task", "mqar", vocab_size=256, train_size=0)
    with pytest.warns(VocabularyWarning, match="requires V > T"):
        create("task", "mqar", seq_len=128, vocab_size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create("task", "mqar", seq_len=64, n_pairs=4, vocab_size=8192)
