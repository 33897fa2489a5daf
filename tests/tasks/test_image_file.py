"""Image files (LRA's CIFAR-10 in its binary format): grey levels by the luminance formula, labels,
a validation share of the training records, a clear error naming a missing file."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import train_two_steps, write_cifar_binaries
from trevo.registry import create
from trevo.tasks.corpus import DataError


def test_image_file_reads_binary_cifar(tmp_path):
    records = write_cifar_binaries(tmp_path)
    task = create("task", "image_file", data_dir=str(tmp_path), val_fraction=0.25)
    test = next(task.eval_batches("test", 4, 1))
    labels, pixels = records["test_batch.bin"]
    r, g, b = pixels[:, :1024].astype(float), pixels[:, 1024:2048].astype(float), pixels[:, 2048:].astype(float)
    assert test["input"].tolist() == np.floor(0.2989 * r + 0.5870 * g + 0.1140 * b).astype(int).tolist()
    assert test["target"].tolist() == labels.tolist()
    assert sum(len(x["target"]) for x in task.eval_batches("val", 4, 5)) == 5  # 25% of 20 training records
    (tmp_path / "data_batch_3.bin").unlink()
    with pytest.raises(DataError, match="data_batch_3.bin"):
        create("task", "image_file", data_dir=str(tmp_path))
    with pytest.raises(DataError, match="test_batch.bin"):
        create("task", "image_file")


def test_trains_two_steps(tmp_path):
    write_cifar_binaries(tmp_path)
    result = train_two_steps(tmp_path / "run", {"name": "image_file", "data_dir": str(tmp_path)}, "false")
    assert 0.0 <= result["final"]["accuracy"] <= 1.0
