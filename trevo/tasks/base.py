"""The task contract: a task yields batches from a seed and owns its loss and metric.

Batches are dicts of tensors: ``input`` (token ids ``[B, T]``), ``target``, and optionally
``padding_mask`` (True at real tokens) and ``loss_mask``. Training batches are a pure function of
(seed, step), so a resumed run sees exactly the batches an uninterrupted one would. Evaluation has
two fixed splits: ``"val"`` (used during training and for choosing hyper-parameters) and ``"test"``
(evaluated once per chosen config by the arena); synthetic tasks draw them from two fixed seeds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class TaskInfo:
    vocab_size: int
    head: str  # "lm" (next token), "mlm" (masked tokens), "classify" (one label per sequence), "regress"
    # (real numbers per output point: StructuredTaskInfo.output_dims) or "reconstruct" (every token decoded
    # from the last position alone: MAD's compression)
    seq_len: int
    n_classes: int = 0
    # "required" (causal LM), "forbidden" (masked LM) or "either" (classification).
    causal: str = "either"
    layout: tuple[int, ...] | None = None  # the N-D grid of the positions, e.g. (H, W) for images
    metric: str = "loss"  # the primary metric
    higher_is_better: bool = False
    models: tuple[str, ...] = ()  # the model architectures that can solve it; empty: any
    # Segments per stream (trevo.segments): > 1 means every batch row is segments × seq_len tokens long,
    # cut into consecutive segments of seq_len that a model with memory reads one after the other.
    segments: int = 1


class Task:
    """Base class. Subclasses set ``info`` and implement ``train_batch`` and ``eval_batches``."""

    info: TaskInfo
    # The registry ``objective`` a run on this task minimises unless ``train.objective`` names another;
    # None: ``loss`` below.
    objective: str | None = None

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        raise NotImplementedError

    def eval_batches(self, split: str, batch_size: int, n_batches: int) -> Iterator[Batch]:
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Mean cross-entropy over the scored positions."""
        return cross_entropy(logits, batch)

    def score(self, logits: torch.Tensor, batch: Batch) -> dict[str, float]:
        """Sums over one evaluation batch; ``finalize`` turns their totals into metrics."""
        nll = cross_entropy(logits, batch, reduction="sum")
        pred = logits.argmax(-1)
        mask = scored_mask(batch)
        correct = ((pred == batch["target"]) & mask).sum()
        return {"nll": float(nll), "count": float(mask.sum()), "correct": float(correct)}

    def references(self) -> dict[str, float]:
        """Reference values of the primary metric that need no model (e.g. the unigram entropy)."""
        return {}

    def finalize(self, totals: dict[str, float]) -> dict[str, float]:
        loss = totals["nll"] / max(totals["count"], 1)
        return {"loss": loss, "accuracy": totals["correct"] / max(totals["count"], 1)}


def scored_mask(batch: Batch) -> torch.Tensor:
    if "loss_mask" in batch:
        return batch["loss_mask"].bool()
    return torch.ones_like(batch["target"], dtype=torch.bool)


def has_targets(batch: Batch) -> bool:
    """Whether ``batch`` scores any position (a stream's window before its question scores none)."""
    return bool(scored_mask(batch).any())


def cross_entropy(logits: torch.Tensor, batch: Batch, reduction: str = "mean") -> torch.Tensor:
    target = batch["target"]
    mask = scored_mask(batch)
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), reduction="none")
    nll = nll * mask.reshape(-1)
    if reduction == "sum":
        return nll.sum()
    return nll.sum() / mask.sum().clamp_min(1)


def step_generator(seed: int, step: int) -> torch.Generator:
    """A generator for (seed, step) alone: batches do not depend on what was drawn before."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


BITS_PER_NAT = 1 / math.log(2)


class LabelledSplitsTask(Task):
    """A task over fixed labelled examples per split (image classification sets). A subclass implements
    ``_split(split) -> (inputs, labels)`` (with its own error for an unknown split); a training batch is drawn
    uniformly with replacement from the ``"train"`` split by ``step_generator(seed, step)``, and evaluation is
    the split's examples in order, at most ``n_batches`` batches (fewer if the split runs out)."""

    def _split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        inputs, labels = self._split("train")
        idx = torch.randint(0, len(labels), (batch_size,), generator=step_generator(seed, step))
        return {"input": inputs[idx], "target": labels[idx]}

    def eval_batches(self, split: str, batch_size: int, n_batches: int) -> Iterator[Batch]:
        inputs, labels = self._split(split)
        for start in range(0, min(len(labels), batch_size * n_batches), batch_size):
            yield {"input": inputs[start:start + batch_size], "target": labels[start:start + batch_size]}
