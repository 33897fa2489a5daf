"""Perceiver IO's structured-output tasks on scikit-learn's bundled 8×8 digits (no download).

- ``digits_multitask``: one encoder, two classification targets decoded by two task-index queries
  (Perceiver IO §4, multi-task decoding): the digit class and whether the image was mirrored
  left-right (each training image is mirrored with probability 1/2).
- ``digits_autoencode``: multimodal auto-encoding of an image and its label through one latent array
  (Perceiver IO §4.3, Kinetics auto-encoding, on two modalities): the input is the 64 pixels and the
  label token, which is replaced by a "missing" token for half the training examples and for every
  evaluation example; the model reconstructs both. With the label hidden, its reconstruction is
  classification through the autoencoder (the paper's masked-class-label experiment).

Pixels are the 17 grey levels 0..16 of the dataset. Splits: a fixed permutation (seed 0) of the
1797 images into train (1397), val (200) and test (200).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from trevo.errors import TrevoError
from trevo.registry import Paper, register
from trevo.tasks.base import Batch, Task, TaskInfo, step_generator
from trevo.tasks.synthetic import require

LEVELS = 17
SPLITS = {"train": (0, 1397), "val": (1397, 1597), "test": (1597, 1797)}
PERCEIVER_IO = Paper("Perceiver IO: A General Architecture for Structured Inputs & Outputs", "2107.14795", 2021)


@dataclass(frozen=True)
class Modality:
    """One modality of a multimodal sequence: its ``length`` tokens come in sequence order and use the
    ids [offset, offset + vocab) of the joint vocabulary."""

    name: str
    length: int
    offset: int
    vocab: int
    layout: tuple[int, ...] | None = None


@dataclass(frozen=True)
class StructuredTaskInfo(TaskInfo):
    """TaskInfo with Perceiver IO's structured inputs and outputs: ``task_classes`` (one classification
    target per entry, decoded by one query each), ``modalities`` (a multimodal input),
    ``input_features`` (> 0: the input is ``[B, M, input_features]`` floats, not token ids), of which the
    first ``coordinate_dims`` are coordinates in [−1, 1] to take Fourier features of, ``unordered`` (the
    elements are a set: index positions are refused), and ``output_dims`` (head ``"regress"``: that many
    real numbers decoded at each of the ``seq_len`` output points)."""

    task_classes: tuple[int, ...] = ()
    modalities: tuple[Modality, ...] = ()
    input_features: int = 0
    coordinate_dims: int = 0
    unordered: bool = False
    output_dims: int = 0


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels ``[1797, 64]`` (levels 0..16) and labels ``[1797]``, in the fixed split order."""
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError:
        raise TrevoError("the digits tasks need scikit-learn (pip install scikit-learn)") from None
    data = sk_digits()
    order = torch.randperm(len(data.target), generator=torch.Generator().manual_seed(0))
    return torch.as_tensor(data.data, dtype=torch.long)[order], torch.as_tensor(data.target, dtype=torch.long)[order]


class _DigitsTask(Task):
    def __init__(self) -> None:
        self.pixels, self.labels = load_digits()

    def _split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in SPLITS:
            raise TrevoError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")
        lo, hi = SPLITS[split]
        return self.pixels[lo:hi], self.labels[lo:hi]

    def _make(self, pixels: torch.Tensor, labels: torch.Tensor, gen: torch.Generator, train: bool) -> Batch:
        raise NotImplementedError

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        gen = step_generator(seed, step)
        pixels, labels = self._split("train")
        idx = torch.randint(0, len(labels), (batch_size,), generator=gen)
        return self._make(pixels[idx], labels[idx], gen, True)

    def eval_batches(self, split: str, batch_size: int, n_batches: int) -> Iterator[Batch]:
        pixels, labels = self._split(split)
        gen = torch.Generator().manual_seed(1 if split == "val" else 2)
        for start in range(0, min(len(labels), batch_size * n_batches), batch_size):
            yield self._make(pixels[start:start + batch_size], labels[start:start + batch_size], gen, False)


@register("task", "digits_multitask", paper=PERCEIVER_IO, category="Arch", family="perceiver_tasks")
class DigitsMultitask(_DigitsTask):
    """Two targets per image, decoded from one encoder: digit class (10) and mirrored or not (2).
    Metric: mean accuracy of the two targets; needs a model with task queries (perceiver_io)."""

    def __init__(self) -> None:
        super().__init__()
        self.info = StructuredTaskInfo(vocab_size=LEVELS, head="classify", seq_len=64, n_classes=10,
                                       layout=(8, 8), metric="accuracy", higher_is_better=True,
                                       task_classes=(10, 2), models=("perceiver_io",))

    def _make(self, pixels, labels, gen, train):
        flip = torch.rand(len(labels), generator=gen) < 0.5
        images = pixels.view(-1, 8, 8)
        images = torch.where(flip[:, None, None], images.flip(-1), images)
        return {"input": images.reshape(-1, 64), "target": torch.stack([labels, flip.long()], dim=1)}

    def score(self, logits: torch.Tensor, batch: Batch) -> dict[str, float]:
        totals = super().score(logits, batch)
        correct = (logits.argmax(-1) == batch["target"]).sum(0)
        return {**totals, "digit_correct": float(correct[0]), "mirror_correct": float(correct[1])}

    def finalize(self, totals: dict[str, float]) -> dict[str, float]:
        metrics = super().finalize(totals)
        n = max(totals["count"] / 2, 1)
        return {**metrics, "digit_accuracy": totals["digit_correct"] / n,
                "mirror_accuracy": totals["mirror_correct"] / n}


@register("task", "digits_autoencode", paper=PERCEIVER_IO, category="Arch", family="perceiver_tasks")
class DigitsAutoencode(_DigitsTask):
    """Reconstruct image (64 pixels) and label (1 token) through the model; the input label is hidden
    for half the training examples and all evaluation ones. Metric: label accuracy with the label
    hidden (higher is better); also pixel accuracy and the loss over every output."""

    def __init__(self, hide_label: float = 0.5) -> None:
        require(0 <= hide_label <= 1, f"digits_autoencode: hide_label is a probability in [0, 1], got {hide_label}")
        super().__init__()
        self.hide_label = hide_label
        self.missing = LEVELS + 10  # the label modality's 11th value: "not given"
        image = Modality("image", 64, 0, LEVELS, (8, 8))
        label = Modality("label", 1, LEVELS, 11, (1,))
        self.info = StructuredTaskInfo(vocab_size=LEVELS + 11, head="mlm", seq_len=65, causal="forbidden",
                                       metric="label_accuracy", higher_is_better=True, modalities=(image, label))

    def _make(self, pixels, labels, gen, train):
        hide = torch.rand(len(labels), generator=gen) < self.hide_label
        if not train:
            hide = torch.ones_like(hide)
        label_in = torch.where(hide, torch.full_like(labels, self.missing), labels + LEVELS)
        target = torch.cat([pixels, labels[:, None] + LEVELS], dim=1)
        return {"input": torch.cat([pixels, label_in[:, None]], dim=1), "target": target}

    def score(self, logits: torch.Tensor, batch: Batch) -> dict[str, float]:
        totals = super().score(logits, batch)
        correct = logits.argmax(-1) == batch["target"]
        return {**totals, "pixel_correct": float(correct[:, :64].sum()), "label_correct": float(correct[:, 64].sum()),
                "images": float(len(correct))}

    def finalize(self, totals: dict[str, float]) -> dict[str, float]:
        metrics = super().finalize(totals)
        n = max(totals["images"], 1)
        return {**metrics, "pixel_accuracy": totals["pixel_correct"] / (64 * n),
                "label_accuracy": totals["label_correct"] / n}
