"""What the generated tasks share: fixed evaluation sets drawn from fixed seeds, optional on-disk
caching of those sets, fixed-size training sets with epochs (the papers' protocol), and the checks of
their parameters.

A generated task implements ``make(gen, n) -> Batch`` (``n`` examples from a ``torch.Generator``).
Two training protocols:

- **fresh every step** (``train_size=None``, the default): training batch ``step`` is
  ``make(step_generator(seed, step), batch_size)``, new examples at every step (infinite data);
- **a fixed training set** (``train_size=N``, as the papers train: Zoology's 100k MQAR examples, LRA's
  96k ListOps trees): N examples generated once per seed (in blocks of ``BLOCK`` from
  ``step_generator(TRAIN_SET_SEED + seed, block)``; cached on disk under ``cache_dir``), read in
  epochs: epoch e is the permutation ``randperm(N, step_generator(EPOCH_SEED + seed, e))``, and
  batch ``step`` is positions ``step·B … step·B + B - 1`` of the concatenated epochs, so it is a pure
  function of (seed, step) and a resumed run reads exactly the batches of an uninterrupted one.

An evaluation split is a sequence of examples made in blocks of ``BLOCK`` from
``step_generator(SPLIT_SEEDS[split], block)``, so the first ``n`` examples of a split never depend on
the batch size or on how many are asked for; ``test_size=M`` fixes each split to its first M
examples, all evaluated whatever ``train.eval_batches`` is. A task whose paper removes duplicates
(``dedup = True``: LRA ListOps builds one set of distinct trees and splits it) keeps the first
occurrence of each input and, where ``test_size`` is set, makes the splits disjoint: test first, then
validation without test's examples, then training without either.
``LengthGeneralisationTask`` is the same for a task trained at one length and evaluated at several.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from trevo.errors import TrevoError
from trevo.tasks.base import Batch, Task, step_generator
from trevo.tasks.corpus import DataError

SPLIT_SEEDS = {"val": 7_000_003, "test": 9_000_011}
TRAIN_SET_SEED = 3_000_017  # + the run's seed: the stream a fixed training set is drawn from
EPOCH_SEED = 5_000_011  # + the run's seed: the stream of the epochs' permutations
BLOCK = 64
CACHE_VERSION = 1
# Blocks drawn without one new distinct example before a deduplicated set gives up (the task cannot make
# that many distinct examples).
DEDUP_PATIENCE = 50


class TaskParameterError(TrevoError, ValueError):
    """A task parameter outside what the task's definition can generate."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise TaskParameterError(message)


def split_seed(split: str) -> int:
    if split not in SPLIT_SEEDS:
        raise DataError(f"unknown evaluation split {split!r}; splits are {', '.join(SPLIT_SEEDS)}")
    return SPLIT_SEEDS[split]


def numpy_seed(gen: torch.Generator) -> int:
    """A seed for numpy or ``random`` drawn from ``gen`` (for generators written with them)."""
    return int(torch.randint(0, 2**62, (1,), generator=gen))


def slice_batch(batch: Batch, lo: int, hi: int) -> Batch:
    return {k: v[lo:hi] for k, v in batch.items()}


def concat(batches: list[Batch]) -> Batch:
    return {k: torch.cat([b[k] for b in batches]) for k in batches[0]}


def compact(batch: Batch) -> Batch:
    """Integer tensors in the narrowest dtype that holds them (a 96k-example ListOps set is 1.5 GB as
    int64, 0.2 GB as uint8); ``widen`` restores int64 for the model."""
    out = {}
    for k, v in batch.items():
        if v.dtype == torch.long and v.numel():
            lo, hi = int(v.min()), int(v.max())
            dtype = (torch.uint8 if lo >= 0 and hi < 256 else torch.int16 if -2**15 <= lo and hi < 2**15
                     else torch.int32 if -2**31 <= lo and hi < 2**31 else torch.long)
            v = v.to(dtype)
        out[k] = v.contiguous()
    return out


def widen(batch: Batch) -> Batch:
    return {k: v if v.dtype in (torch.bool, torch.long) or v.is_floating_point() else v.long()
            for k, v in batch.items()}


def check_sizes(name: str, train_size: int | None, test_size: int | None) -> None:
    for field, value in (("train_size", train_size), ("test_size", test_size)):
        require(value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1),
                f"{name}: {field} must be a positive number of examples or null (None: "
                f"{'fresh examples every step' if field == 'train_size' else 'batch_size × eval_batches'}), "
                f"got {value!r}")


def epoch_indices(n: int, seed: int, step: int, batch_size: int) -> torch.Tensor:
    """The training-set indices of batch ``step``: positions step·B … step·B + B - 1 of the epochs'
    permutations laid end to end (a batch may straddle two epochs)."""
    positions = torch.arange(step * batch_size, (step + 1) * batch_size)
    epochs, offsets = positions // n, positions % n
    out = torch.empty(batch_size, dtype=torch.long)
    for e in epochs.unique().tolist():
        at = epochs == e
        out[at] = torch.randperm(n, generator=step_generator(EPOCH_SEED + _seed_offset(seed), e))[offsets[at]]
    return out


def _seed_offset(seed: int) -> int:
    return seed % 1_000_000  # keeps the streams of different purposes apart (seeds differ by ≥ 2M)


def row_keys(batch: Batch) -> list[bytes]:
    """One key per example: its input tokens (the example's identity for deduplication)."""
    inputs = batch["input"].reshape(len(batch["input"]), -1).to(torch.int64).numpy()
    return [row.tobytes() for row in inputs]


def distinct_set(make, stream_seed: int, n: int, exclude: set[bytes], where: str) -> tuple[Batch, set[bytes]]:
    """The first ``n`` examples of the block stream of ``stream_seed`` whose inputs are not yet seen and
    not in ``exclude``; and their keys."""
    kept: list[Batch] = []
    keys: set[bytes] = set()
    count, idle, block = 0, 0, 0
    while count < n:
        batch = make(step_generator(stream_seed, block), BLOCK)
        block += 1
        fresh = []
        for i, key in enumerate(row_keys(batch)):
            if key not in keys and key not in exclude:
                keys.add(key)
                fresh.append(i)
        idle = 0 if fresh else idle + 1
        if idle >= DEDUP_PATIENCE:
            raise TaskParameterError(f"{where}: only {count + len(fresh)} distinct examples in {block * BLOCK} draws, "
                                     f"fewer than the {n} asked for; lower train_size / test_size or widen the task")
        if fresh:
            index = torch.tensor(fresh)
            kept.append({k: v[index] for k, v in batch.items()})
            count += len(fresh)
    return slice_batch(concat(kept), 0, n), keys


class FixedSets:
    """The fixed training set and the evaluation-set size shared by generated tasks: a task calls
    ``fixed_sets(name, train_size, test_size, cache_dir)`` in its constructor and implements
    ``make_train(gen, n)``; ``dedup = True`` where its paper removes duplicate examples."""

    cache_dir: str | None = None
    train_size: int | None = None
    test_size: int | None = None
    dedup: bool = False
    params: dict[str, Any]

    def fixed_sets(self, name: str, train_size: int | None, test_size: int | None, cache_dir: str | None) -> None:
        check_sizes(name, train_size, test_size)
        self.train_size, self.test_size, self.cache_dir = train_size, test_size, cache_dir

    def make_train(self, gen: torch.Generator, n: int) -> Batch:
        raise NotImplementedError

    def train_view(self, batch: Batch) -> Batch:
        """What a training batch shows the loss (a subclass may score more positions in training)."""
        return batch

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        if self.train_size is None:
            return self.train_view(self.make_train(step_generator(seed, step), batch_size))
        data = self.train_set(seed)
        idx = epoch_indices(self.train_size, seed, step, batch_size)
        return self.train_view(widen({k: v[idx] for k, v in data.items()}))

    def epochs(self, steps: int, batch_size: int) -> float | None:
        """How many passes over the fixed training set ``steps`` batches make; None when fresh."""
        return None if self.train_size is None else steps * batch_size / self.train_size

    def describe_data(self, steps: int, batch_size: int) -> str:
        """The data protocol, for the report's controlled variables."""
        if self.train_size is None:
            train = "fresh examples every step (no fixed training set)"
        else:
            train = (f"a fixed training set of {self.train_size:,} examples per seed, "
                     f"{self.epochs(steps, batch_size):.3g} epochs" + (", duplicates removed" if self.dedup else ""))
        evals = (f"val and test sets of {self.test_size:,} examples" if self.test_size is not None
                 else "val and test sets of batch_size × eval_batches examples")
        disjoint = " (all splits disjoint)" if self.dedup and self.test_size is not None and self.train_size else ""
        return f"{train}; {evals}{disjoint}"

    def train_set(self, seed: int) -> Batch:
        """The fixed training set of ``seed`` (generated once; read from the cache when there is one)."""
        return self._stored(f"train{seed}", self.train_size, lambda: self._build_train(seed, self.train_size))

    def _build_train(self, seed: int, n: int) -> Batch:
        stream = TRAIN_SET_SEED + _seed_offset(seed)
        if not self.dedup:
            blocks = [self.make_train(step_generator(stream, b), BLOCK) for b in range(-(-n // BLOCK))]
            return compact(slice_batch(concat(blocks), 0, n))
        exclude: set[bytes] = set()
        if self.test_size is not None:  # the paper's splits are one set of distinct examples: disjoint
            for split in SPLIT_SEEDS:
                exclude |= set(row_keys(self.fixed_eval_set(split)))
        return compact(distinct_set(self.make_train, stream, n, exclude, type(self).__name__.lower())[0])

    def fixed_eval_set(self, split: str) -> Batch:
        """The ``test_size`` examples of ``split`` (deduplicated, and disjoint from the test set for val,
        where the task dedups)."""
        split_seed(split)
        if not self.dedup:
            return self._stored(f"{split}-eval", self.test_size, lambda: self.eval_examples(split, self.test_size))

        def build() -> Batch:
            exclude = set() if split == "test" else set(row_keys(self.fixed_eval_set("test")))
            return compact(distinct_set(self.eval_make, SPLIT_SEEDS[split], self.test_size, exclude,
                                        type(self).__name__.lower())[0])
        return widen(self._stored(f"{split}-distinct", self.test_size, build))

    def eval_make(self, gen: torch.Generator, n: int) -> Batch:
        raise NotImplementedError

    def eval_examples(self, split: str, n: int) -> Batch:
        raise NotImplementedError

    def _stored(self, what: str, n: int, build) -> Batch:
        """The set ``what`` of ``n`` examples: from memory, else from the cache, else built (and cached)."""
        memo = self.__dict__.setdefault("_memo", {})
        if (what, n) in memo:
            return memo[what, n]
        path = self._fixed_path(what, n)
        if path is not None and path.is_file():
            from safetensors.torch import load_file

            memo[what, n] = load_file(path)
            return memo[what, n]
        data = memo[what, n] = build()
        if path is not None:
            from safetensors.torch import save_file

            from trevo.checkpoint import atomic_write

            atomic_write(path, lambda tmp: save_file({k: v.contiguous() for k, v in data.items()}, tmp))
        return data

    def _fixed_path(self, what: str, n: int) -> Path | None:
        if self.cache_dir is None:
            return None
        name = type(self).__name__.lower()
        # A deduplicated training set excludes the evaluation sets, so it depends on their size too.
        excluded = self.test_size if self.dedup and what.startswith("train") else None
        key = json.dumps({"task": name, "params": self.params, "set": what, "n": n, "dedup": self.dedup,
                          "excluded": excluded, "version": CACHE_VERSION}, sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return Path(self.cache_dir).expanduser() / f"{name}-{what}-{n}-{digest}.safetensors"


class GeneratedTask(FixedSets, Task):
    """A task whose examples come from ``make``; subclasses set ``info`` and ``params`` (the options
    that determine the examples, used as the cache key), call ``fixed_sets`` and may set ``cache_dir``."""

    def make(self, gen: torch.Generator, n: int) -> Batch:
        raise NotImplementedError

    def make_train(self, gen: torch.Generator, n: int) -> Batch:
        return self.make(gen, n)

    def eval_make(self, gen: torch.Generator, n: int) -> Batch:
        return self.make(gen, n)

    def eval_examples(self, split: str, n: int) -> Batch:
        return self.eval_set(split, n)

    def eval_set(self, split: str, n: int) -> Batch:
        """The first ``n`` examples of ``split`` (read from the cache when there is one)."""
        seed = split_seed(split)
        blocks = math.ceil(n / BLOCK)
        path = self._cache_path(split, blocks)
        if path is not None and path.is_file():
            from safetensors.torch import load_file

            return slice_batch(load_file(path), 0, n)
        data = concat([self.make(step_generator(seed, b), BLOCK) for b in range(blocks)])
        if path is not None:
            from safetensors.torch import save_file

            from trevo.checkpoint import atomic_write

            atomic_write(path, lambda tmp: save_file({k: v.contiguous() for k, v in data.items()}, tmp))
        return slice_batch(data, 0, n)

    def eval_batches(self, split: str, batch_size: int, n_batches: int) -> Iterator[Batch]:
        """``n_batches`` batches of the split; with ``test_size`` set, every one of its examples instead."""
        if self.test_size is not None:
            data = self.fixed_eval_set(split)
            for lo in range(0, self.test_size, batch_size):
                yield slice_batch(data, lo, lo + batch_size)
            return
        data = self.eval_set(split, batch_size * n_batches)
        for b in range(n_batches):
            yield slice_batch(data, b * batch_size, (b + 1) * batch_size)

    def _cache_path(self, split: str, blocks: int) -> Path | None:
        if self.cache_dir is None:
            return None
        name = type(self).__name__.lower()
        key = json.dumps({"task": name, "params": self.params, "split": split, "blocks": blocks,
                          "version": CACHE_VERSION}, sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return Path(self.cache_dir).expanduser() / f"{name}-{split}-{blocks * BLOCK}-{digest}.safetensors"


class LengthGeneralisationTask(FixedSets, Task):
    """A generated task trained at ``seq_len`` and evaluated at each of ``eval_lengths`` (length
    extrapolation). A subclass sets ``seq_len``, ``eval_lengths`` (sorted) and ``info``, implements
    ``make(gen, n, length) -> Batch`` and a ``score`` that counts ``correct@L`` and ``count@L``; each length
    has its own block stream, so its evaluation set is fixed whatever the other lengths are. ``finalize``
    reports ``length_metrics`` (``acc@L``) for each length evaluated and ``accuracy``, their mean."""

    seq_len: int
    eval_lengths: tuple[int, ...]

    def make(self, gen: torch.Generator, n: int, length: int) -> Batch:
        raise NotImplementedError

    def make_train(self, gen: torch.Generator, n: int) -> Batch:
        return self.make(gen, n, self.seq_len)

    def eval_set(self, split: str, n: int, length: int) -> Batch:
        seed = split_seed(split) + length
        blocks = -(-n // BLOCK)
        return slice_batch(concat([self.make(step_generator(seed, b), BLOCK, length) for b in range(blocks)]), 0, n)

    def eval_batches(self, split: str, batch_size: int, n_batches: int) -> Iterator[Batch]:
        """``n_batches`` batches at each evaluation length, shortest first (with ``test_size`` set, its
        examples at each length, whatever ``n_batches``)."""
        n = self.test_size if self.test_size is not None else batch_size * n_batches
        for length in self.eval_lengths:
            data = self.eval_set(split, n, length)
            for lo in range(0, n, batch_size):
                yield slice_batch(data, lo, lo + batch_size)

    def length_metrics(self, totals: dict[str, float], length: int) -> dict[str, float]:
        """The metrics of one evaluated length (a subclass adds its own after ``acc@L``)."""
        return {f"acc@{length}": totals[f"correct@{length}"] / totals[f"count@{length}"]}

    def finalize(self, totals: dict[str, float]) -> dict[str, float]:
        metrics = super().finalize(totals)
        lengths = [L for L in self.eval_lengths if totals.get(f"count@{L}", 0) > 0]
        for L in lengths:
            metrics.update(self.length_metrics(totals, L))
        if lengths:
            metrics["accuracy"] = sum(metrics[f"acc@{L}"] for L in lengths) / len(lengths)
        return metrics
