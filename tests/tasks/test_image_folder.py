"""The user's own image folder: class sub-folders of images as grey pixel sequences, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from trevo.tasks.corpus import DataError
from trevo.tasks.image_folder import ImageFolder

Image = pytest.importorskip("PIL.Image", reason="image_folder reads images with Pillow")


def make_folder(root, n=30, size=(6, 4), mixed=False):
    rng = np.random.default_rng(0)
    for label in ("bright", "dark"):
        (root / label).mkdir(parents=True)
        for i in range(n):
            shape = (size[1] + (i == 3 and mixed), size[0])
            base = 200 if label == "bright" else 30
            Image.fromarray((base + rng.integers(0, 20, shape)).astype(np.uint8)).save(root / label / f"{i}.png")
    return root


def test_pixels_labels_and_layout(tmp_path):
    task = ImageFolder(str(make_folder(tmp_path / "data")))
    assert task.classes == ["bright", "dark"] and task.info.layout == (4, 6) and task.info.seq_len == 24
    pixels, labels = task.splits["all"]
    first = np.asarray(Image.open(tmp_path / "data" / "bright" / "0.png"))
    assert pixels[0].tolist() == first.reshape(-1).tolist() and labels[0] == 0  # row-major pixels of the file
    assert sum(len(task.splits[s][1]) for s in ("train", "val", "test")) == 60


def test_mixed_sizes_name_the_files_and_the_fix(tmp_path):
    with pytest.raises(DataError, match="mixed sizes.*3.png is 6×5.*image_size"):
        ImageFolder(str(make_folder(tmp_path / "data", mixed=True)))
    task = ImageFolder(str(tmp_path / "data"), image_size=8)
    assert task.info.layout == (8, 8)


def test_errors(tmp_path):
    (tmp_path / "one" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="1 class sub-folder"):
        ImageFolder(str(tmp_path / "one"))
    (tmp_path / "one" / "b").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        ImageFolder(str(tmp_path / "one"))
    (tmp_path / "one" / "a" / "x.png").write_bytes(b"not an image")
    (tmp_path / "one" / "b" / "y.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot read image"):
        ImageFolder(str(tmp_path / "one"))
