"""Image classification from a folder of class sub-folders (``data/cat/*.png``, ``data/dog/*.png``),
read as grey pixel sequences in row-major order (the sequential-image protocol of the ``digits``
task; 256 grey levels as tokens, layout (H, W)); metric accuracy.

Images are read with Pillow and converted to grey (ITU-R 601-2 luma, Pillow's ``L`` mode); every
image must have one size, or ``image_size`` N resizes them all to N×N (bilinear). Classes are the
sub-folder names, sorted. Splits by a hash of each file's path relative to the folder (the rule of
``trevo.tasks.corpus``: validation when its first SHA-256 byte h < 256·f, test when h < 512·f), so a
file's split never depends on what else is in the folder; ``all`` is every image.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from trevo.registry import Paper, register
from trevo.tasks.base import LabelledSplitsTask, TaskInfo
from trevo.tasks.corpus import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _split_of(relative: str, fraction: float) -> str:
    h = hashlib.sha256(relative.encode()).digest()[0]
    return "val" if h < 256 * fraction else "test" if h < 512 * fraction else "train"


def read_grey(path: Path, size: int | None) -> np.ndarray:
    """The image at ``path`` as a uint8 grey array, resized to ``size``×``size`` when given."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise DataError("image_folder reads images with Pillow: pip install pillow") from None
    try:
        with Image.open(path) as image:
            grey = image.convert("L")
            if size is not None:
                grey = grey.resize((size, size), Image.BILINEAR)
            return np.asarray(grey, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"cannot read image {path}: {e}; remove it or replace it with a readable image") from None


@register("task", "image_folder", category="Benchmark", family="pixels",
          paper=Paper("A Simple Way to Initialize Recurrent Networks of Rectified Linear Units (pixel sequences)",
                      "1504.00941", 2015))
class ImageFolder(LabelledSplitsTask):
    """Classify grey images from a folder of class sub-folders, read as pixel sequences; accuracy."""

    def __init__(self, data: str | None = None, image_size: int | None = None, val_fraction: float = 0.1) -> None:
        if data is None:
            raise DataError("image_folder needs task.data: a folder with one sub-folder of images per class")
        root = Path(data).expanduser()
        if not root.is_dir():
            raise DataError(f"image_folder: {str(root)!r} is not a folder; give one with a sub-folder per class")
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if len(self.classes) < 2:
            raise DataError(f"{root} has {len(self.classes)} class sub-folder(s); classification needs at least two "
                            f"(e.g. {root}/cat/*.png and {root}/dog/*.png)")
        files: list[tuple[Path, int]] = []
        for label, name in enumerate(self.classes):
            found = sorted(f for f in (root / name).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"class folder {root / name} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            files += [(f, label) for f in found]
        images, first = [], None
        for path, _ in files:
            image = read_grey(path, image_size)
            if first is None:
                first = (path, image.shape)
            elif image.shape != first[1]:
                raise DataError(f"images of mixed sizes: {first[0]} is {first[1][1]}×{first[1][0]} but {path} is "
                                f"{image.shape[1]}×{image.shape[0]}; set task.image_size=N to resize all to N×N")
            images.append(image)
        pixels = torch.from_numpy(np.stack(images).reshape(len(images), -1).astype(np.int64))
        labels = torch.tensor([label for _, label in files])
        names = [_split_of(p.relative_to(root).as_posix(), val_fraction) for p, _ in files]
        self.splits = {s: (pixels[[i for i, n in enumerate(names) if n == s]],
                           labels[[i for i, n in enumerate(names) if n == s]]) for s in ("train", "val", "test")}
        self.splits["all"] = (pixels, labels)
        empty = [s for s in ("train", "val", "test") if not len(self.splits[s][1])]
        if empty:
            raise DataError(f"{root}: no image fell in the {' and '.join(empty)} split; give more images")
        h, w = first[1]
        self.info = TaskInfo(vocab_size=256, head="classify", seq_len=h * w, n_classes=len(self.classes),
                             causal="either", layout=(h, w), metric="accuracy", higher_is_better=True)

    def _split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in self.splits:
            raise DataError(f"unknown split {split!r}; splits are {', '.join(self.splits)}")
        return self.splits[split]
