"""Byte corpora: the embedded default (the running Python's standard library source) or a user's
file or folder, split deterministically into train and validation.

A folder is split by file path: with h the first byte of the SHA-256 of a file's relative path, the
file goes to validation when h < 256·f, to test when 256·f <= h < 512·f (f = ``val_fraction``), else
to train; so the split depends on paths only, never on file order or contents. A single file is split
by position: its last fraction f is the test split, the fraction f before it validation.
The default corpus is every ``*.py`` file under ``sysconfig.get_paths()["stdlib"]`` outside
``site-packages`` (about 30 MB on CPython 3.11); its exact bytes depend on the Python version.
"""

from __future__ import annotations

import functools
import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trevo.errors import TrevoError


class DataError(TrevoError, ValueError):
    """Missing, empty or unreadable data."""


@dataclass(frozen=True)
class Corpus:
    train: torch.Tensor  # uint8 [N]
    val: torch.Tensor  # uint8 [M]
    test: torch.Tensor  # uint8 [K]
    source: str

    def split(self, name: str) -> torch.Tensor:
        if name not in ("train", "val", "test"):
            raise DataError(f"unknown split {name!r}; splits are train, val, test")
        return getattr(self, name)

    def unigram_entropy(self) -> float:
        """Entropy in bits of the byte distribution of the training split: a model that ignores
        context cannot beat it on data from the same distribution."""
        counts = torch.bincount(self.train.long(), minlength=256).double()
        p = counts[counts > 0] / counts.sum()
        return float(-(p * p.log2()).sum())


def _split_of(relative: str, val_fraction: float) -> str:
    h = hashlib.sha256(relative.encode()).digest()[0]
    return "val" if h < 256 * val_fraction else "test" if h < 512 * val_fraction else "train"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}; check the path and its permissions") from None


def _as_tensor(chunks: list[bytes]) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(b"".join(chunks), dtype=np.uint8).copy())


@functools.lru_cache(maxsize=4)
def load_corpus(path: str | None = None, val_fraction: float = 0.05, suffix: str = "") -> Corpus:
    """The corpus at ``path`` (a file, or a folder read recursively, optionally only files ending in
    ``suffix``); ``None`` is the standard library's ``.py`` sources."""
    if path is None:
        root, suffix, source = Path(sysconfig.get_paths()["stdlib"]), ".py", "python-stdlib"
        files = [f for f in root.rglob("*.py") if "site-packages" not in f.relative_to(root).parts]
    else:
        root, source = Path(path).expanduser(), str(path)
        if not root.exists():
            raise DataError(f"data path {str(root)!r} does not exist; give an existing file or folder "
                            f"(or leave it unset for the embedded standard-library corpus)")
        if root.is_file():
            data = _read(root)
            if not data:
                raise DataError(f"data file {str(root)!r} is empty; give a file with text in it")
            n = max(1, int(len(data) * val_fraction))
            cut_val, cut_test = len(data) - 2 * n, len(data) - n
            return Corpus(_as_tensor([data[:cut_val]]), _as_tensor([data[cut_val:cut_test]]),
                          _as_tensor([data[cut_test:]]), source)
        files = [f for f in root.rglob(f"*{suffix}") if f.is_file()]
    splits: dict[str, list[bytes]] = {"train": [], "val": [], "test": []}
    for f in sorted(files):
        splits[_split_of(f.relative_to(root).as_posix(), val_fraction)].append(_read(f))
    if not all(any(chunks) for chunks in splits.values()):
        raise DataError(f"data folder {str(root)!r} holds too little {suffix or 'data'} for train, validation "
                        f"and test splits ({len(files)} files found); give a folder with more files in it")
    return Corpus(*(_as_tensor(splits[s]) for s in ("train", "val", "test")), source)
