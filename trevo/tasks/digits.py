"""Pixel-sequence classification on scikit-learn's bundled 8×8 handwritten digits (no download).

The sequential-image protocol of sequential / permuted MNIST (Le et al. 2015, "A Simple Way to
Initialize Recurrent Networks of Rectified Linear Units"), on the 1797 UCI digits that ship with
scikit-learn instead of MNIST: each image is read pixel by pixel in row-major order and classified
(10 classes) from the whole sequence; metric accuracy. Pixels (17 grey levels 0 … 16) are scaled to
256 levels and used as tokens, as LRA does with pixels. ``upsample`` enlarges the image bilinearly
(8·u × 8·u, for longer sequences); ``permuted=True`` applies one fixed permutation of the pixel order
(drawn from ``permutation_seed``) to every image. The layout stays (H, W) when permuted, on purpose:
models still read the scrambled sequence as an H×W grid, as in the Perceiver's permuted-ImageNet
experiment (arXiv:2103.03206), so whatever assumes 2-D structure (S2-MLP's shifts, GFNet's 2-D FFT,
Fourier features of the grid position) now mixes pixels that are not neighbours in the image and
loses accuracy, while learned per-index positions are unaffected (the permutation only relabels
them). A 1-D layout would instead refuse the 2-D baselines (``needs_2d``) and drop the comparison.
Splits: a fixed permutation (seed 0) of the images into train 1397, val 200, test 200.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.registry import Paper, register
from trevo.tasks.base import LabelledSplitsTask, TaskInfo
from trevo.tasks.corpus import DataError
from trevo.tasks.synthetic import require

SPLITS = {"train": (0, 1397), "val": (1397, 1597), "test": (1597, 1797)}
PAPER = Paper("A Simple Way to Initialize Recurrent Networks of Rectified Linear Units (pixel MNIST)",
              "1504.00941", 2015)


def load_digit_images() -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[1797, 8, 8]`` (levels 0..16, float) and labels, in the fixed split order."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the digits task needs scikit-learn, which bundles the images "
                        "(pip install scikit-learn)") from None
    data = load_digits()
    order = torch.randperm(len(data.target), generator=torch.Generator().manual_seed(0))
    images = torch.as_tensor(data.images, dtype=torch.float32)[order]
    return images, torch.as_tensor(data.target, dtype=torch.long)[order]


@register("task", "digits", paper=PAPER, category="Benchmark", family="pixels")
class Digits(LabelledSplitsTask):
    """Classify an 8×8 digit read as a sequence of 256-level pixels (optionally upsampled, permuted)."""

    def __init__(self, upsample: int = 1, permuted: bool = False, permutation_seed: int = 0) -> None:
        require(isinstance(upsample, int) and upsample >= 1,
                f"digits: upsample must be an integer >= 1, got {upsample}")
        images, self.labels = load_digit_images()
        side = 8 * upsample
        if upsample > 1:
            images = F.interpolate(images[:, None], scale_factor=upsample, mode="bilinear", align_corners=False)[:, 0]
        self.pixels = torch.round(images.reshape(len(images), -1) * (255 / 16)).clamp(0, 255).long()
        self.permutation = None
        if permuted:
            self.permutation = torch.randperm(side * side, generator=torch.Generator().manual_seed(permutation_seed))
            self.pixels = self.pixels[:, self.permutation]
        self.info = TaskInfo(vocab_size=256, head="classify", seq_len=side * side, n_classes=10, causal="either",
                             layout=(side, side), metric="accuracy", higher_is_better=True)

    def _split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")
        lo, hi = SPLITS[split]
        return self.pixels[lo:hi], self.labels[lo:hi]
