"""What the generated tasks share: fixed evaluation sets drawn from fixed seeds, optional on-disk
caching of those sets, and the checks of their parameters.

A generated task implements ``make(gen, n) -> Batch`` (``n`` examples from a ``torch.Generator``).
Training batch ``step`` is ``make(step_generator(seed, step), batch_size)``. An evaluation split is a
sequence of examples made in blocks of ``BLOCK`` from ``step_generator(SPLIT_SEEDS[split], block)``,
so the first ``n`` examples of a split never depend on the batch size or on how many are asked for.
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
BLOCK = 64
CACHE_VERSION = 1


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


class GeneratedTask(Task):
    """A task whose examples come from ``make``; subclasses set ``info`` and ``params`` (the options
    that determine the examples, used as the cache key) and may set ``cache_dir``."""

    cache_dir: str | None = None
    params: dict[str, Any]

    def make(self, gen: torch.Generator, n: int) -> Batch:
        raise NotImplementedError

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        return self.make(step_generator(seed, step), batch_size)

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


class LengthGeneralisationTask(Task):
    """A generated task trained at ``seq_len`` and evaluated at each of ``eval_lengths`` (length
    extrapolation). A subclass sets ``seq_len``, ``eval_lengths`` (sorted) and ``info``, implements
    ``make(gen, n, length) -> Batch`` and a ``score`` that counts ``correct@L`` and ``count@L``; each length
    has its own block stream, so its evaluation set is fixed whatever the other lengths are. ``finalize``
    reports ``length_metrics`` (``acc@L``) for each length evaluated and ``accuracy``, their mean."""

    seq_len: int
    eval_lengths: tuple[int, ...]

    def make(self, gen: torch.Generator, n: int, length: int) -> Batch:
        raise NotImplementedError

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        return self.make(step_generator(seed, step), batch_size, self.seq_len)

    def eval_set(self, split: str, n: int, length: int) -> Batch:
        seed = split_seed(split) + length
        blocks = -(-n // BLOCK)
        return slice_batch(concat([self.make(step_generator(seed, b), BLOCK, length) for b in range(blocks)]), 0, n)

    def eval_batches(self, split: str, batch_size: int, n_batches: int) -> Iterator[Batch]:
        """``n_batches`` batches at each evaluation length, shortest first."""
        for length in self.eval_lengths:
            data = self.eval_set(split, batch_size * n_batches, length)
            for b in range(n_batches):
                yield slice_batch(data, b * batch_size, (b + 1) * batch_size)

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
