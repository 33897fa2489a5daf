"""CIFAR-10 as a grey-level pixel sequence, LRA's "Image" task (Tay et al. 2021), read from the
**binary** distribution files the user already has (never unpickled, never downloaded).

Files: ``data_batch_1.bin`` … ``data_batch_5.bin`` (training) and ``test_batch.bin`` in ``data_dir``
(or in ``data_dir/cifar-10-batches-bin``), from https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz.
Each record is 3073 bytes: the label (0-9), then 1024 red, 1024 green and 1024 blue bytes of a
32×32 image in row-major order. As in LRA the image is converted to grey
(0.2989 R + 0.5870 G + 0.1140 B, truncated to an integer 0-255) and read as a sequence of 1024
tokens (layout (32, 32)); 10-way classification, metric accuracy. Splits: the last ``val_fraction``
of the training records is the validation split (LRA reports on the test file), the test file is the
test split.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from trevo.registry import register
from trevo.tasks.base import Batch, Task, TaskInfo, step_generator
from trevo.tasks.corpus import DataError
from trevo.tasks.listops import LRA
from trevo.tasks.synthetic import require

RECORD = 3073
SIDE = 32
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"


def read_records(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey images ``[N, 1024]`` (0..255) and labels ``[N]`` of one CIFAR-10 binary file."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD:
        raise DataError(f"{path} is not a CIFAR-10 binary file: its {raw.size} bytes are not a whole number of "
                        f"{RECORD}-byte records")
    rec = raw.reshape(-1, RECORD)
    labels = rec[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{path} holds a label {labels.max()} > 9; is it the CIFAR-10 (not CIFAR-100) binary file?")
    rgb = rec[:, 1:].reshape(-1, 3, SIDE * SIDE).astype(np.float64)
    grey = (0.2989 * rgb[:, 0] + 0.5870 * rgb[:, 1] + 0.1140 * rgb[:, 2]).astype(np.int64)
    return torch.from_numpy(grey), torch.from_numpy(labels)


@register("task", "image_file", paper=LRA, category="Benchmark", family="lra")
class ImageFile(Task):
    """CIFAR-10 from its binary files as a 1024-token grey pixel sequence (LRA Image)."""

    def __init__(self, data_dir: str | None = None, val_fraction: float = 0.1) -> None:
        expected = ", ".join((*TRAIN_FILES, TEST_FILE))
        if data_dir is None:
            raise DataError(f"image_file needs task.data_dir: a folder with the CIFAR-10 binary files ({expected}) "
                            f"from https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz")
        require(0 < val_fraction < 1, f"image_file: val_fraction must lie in (0, 1), got {val_fraction}")
        root = Path(data_dir).expanduser()
        if (root / "cifar-10-batches-bin").is_dir():
            root = root / "cifar-10-batches-bin"
        missing = [f for f in (*TRAIN_FILES, TEST_FILE) if not (root / f).is_file()]
        if missing:
            raise DataError(f"image_file: {root} lacks {', '.join(missing)}; it needs the CIFAR-10 binary version's "
                            f"files {expected} (https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz, "
                            f"unpacked); the Python (pickled) version is never read")
        parts = [read_records(root / f) for f in TRAIN_FILES]
        pixels, labels = torch.cat([p for p, _ in parts]), torch.cat([y for _, y in parts])
        n_val = max(1, int(len(labels) * val_fraction))
        if n_val >= len(labels):
            raise DataError(f"image_file: {len(labels)} training records are too few to hold out a validation split")
        self.data = {"train": (pixels[:-n_val], labels[:-n_val]), "val": (pixels[-n_val:], labels[-n_val:]),
                     "test": read_records(root / TEST_FILE)}
        self.info = TaskInfo(vocab_size=256, head="classify", seq_len=SIDE * SIDE, n_classes=10, causal="either",
                             layout=(SIDE, SIDE), metric="accuracy", higher_is_better=True)

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        pixels, labels = self.data["train"]
        idx = torch.randint(0, len(labels), (batch_size,), generator=step_generator(seed, step))
        return {"input": pixels[idx], "target": labels[idx]}

    def eval_batches(self, split: str, batch_size: int, n_batches: int) -> Iterator[Batch]:
        if split not in ("val", "test"):
            raise DataError(f"unknown evaluation split {split!r}; splits are val, test")
        pixels, labels = self.data[split]
        for b in range(n_batches):
            lo = b * batch_size
            if lo >= len(labels):
                return
            yield {"input": pixels[lo:lo + batch_size], "target": labels[lo:lo + batch_size]}
