"""Tabular classification with the Perceiver: a table row is a set of cells, each cell an input element.

Perceiver IO (Jaegle et al., arXiv:2107.14795) treats every input as an array of elements with
position features; a table row is one with a column embedding per cell (choose
``model.position=learned``: a learned vector per column index). Each cell's features are its value,
standardised with the training split's mean and standard deviation, and a missing flag (the value is
then 0); the label is one column (``label``, default the last), its distinct values the classes.

Data: a CSV file with a header row (``path``; numeric feature columns; empty, ``NA``, ``nan`` and
``?`` cells are missing), or one of scikit-learn's bundled tables (``dataset``: breast_cancer,
wine, iris; no download). Splits: a fixed permutation (seed 0) of the rows into train 70 %,
val 15 %, test 15 %. Metric: accuracy. ``gradient_boosting_accuracy`` fits scikit-learn's
HistGradientBoostingClassifier on the same training split, the reference a tabular model is held to.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import torch

from trevo.registry import Paper, register
from trevo.tasks.base import LabelledSplitsTask
from trevo.tasks.corpus import DataError
from trevo.tasks.perceiver_tasks import StructuredTaskInfo

BUNDLED = ("breast_cancer", "wine", "iris")
MISSING = {"", "na", "nan", "?", "null", "none"}
FRACTIONS = {"train": (0.0, 0.7), "val": (0.7, 0.85), "test": (0.85, 1.0)}
PERCEIVER_IO = Paper("Perceiver IO: A General Architecture for Structured Inputs & Outputs", "2107.14795", 2021)


def _bundled(name: str) -> tuple[list[str], torch.Tensor, list[str]]:
    try:
        from sklearn import datasets
    except ImportError:
        raise DataError(f"dataset={name!r} is one of scikit-learn's bundled tables: pip install 'trevo[images]' "
                        f"(scikit-learn), or give a CSV file as path=") from None
    data = getattr(datasets, f"load_{name}")()
    return list(data.feature_names), torch.as_tensor(data.data, dtype=torch.float64), [str(t) for t in data.target]


def read_csv(path: str | Path, label: str = "") -> tuple[list[str], torch.Tensor, list[str]]:
    """Column names, float64 values ``[rows, columns]`` (NaN where missing) and the label strings of a CSV
    file with a header; ``label`` names the label column (default the last)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read the table {path}: {getattr(e, 'strerror', None) or e}") from None
    if len(rows) < 2:
        raise DataError(f"{path} needs a header row and at least one data row, it has {len(rows)} rows")
    header = [h.strip() for h in rows[0]]
    if label and label not in header:
        raise DataError(f"label={label!r} is not a column of {path}; its columns are {', '.join(header)}")
    target = header.index(label) if label else len(header) - 1
    names = [h for i, h in enumerate(header) if i != target]
    values, labels = [], []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{path}, line {line}: {len(row)} cells, the header has {len(header)}")
        cells = []
        for i, cell in enumerate(row):
            if i == target:
                continue
            if cell.strip().lower() in MISSING:
                cells.append(math.nan)
                continue
            try:
                cells.append(float(cell))
            except ValueError:
                raise DataError(f"{path}, line {line}: column {header[i]!r} holds {cell!r}, not a number; the "
                                f"tabular task reads numeric feature columns (encode or drop that column)") from None
        values.append(cells)
        labels.append(row[target].strip())
    return names, torch.tensor(values, dtype=torch.float64), labels


@register("task", "tabular", paper=PERCEIVER_IO, category="Arch", family="perceiver_tasks")
class Tabular(LabelledSplitsTask):
    """Classify a table row (a CSV file or a bundled table) from its cells, one input element each.

    Each cell is its value and a missing flag; the column's identity comes from the model's position
    component (``model.position=learned``: learned column embeddings)."""

    def __init__(self, dataset: str = "breast_cancer", path: str = "", label: str = "") -> None:
        if path:
            self.columns, values, labels = read_csv(path, label)
        else:
            if dataset not in BUNDLED:
                raise DataError(f"tabular: dataset must be one of {', '.join(BUNDLED)} (or give path= a CSV "
                                f"file), got {dataset!r}")
            if label:
                raise DataError("tabular: label= names a column of a CSV file (path=); a bundled table has its own")
            self.columns, values, labels = _bundled(dataset)
        self.classes = sorted(set(labels), key=lambda c: (len(c), c))  # "2" before "10"
        if len(self.classes) < 2:
            raise DataError(f"tabular: the label column has {len(self.classes)} distinct value(s); a classifier "
                            f"needs at least 2")
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
        self.values = values[order]
        self.labels = torch.tensor([self.classes.index(c) for c in labels], dtype=torch.long)[order]
        n = len(labels)
        self.bounds = {s: (int(lo * n), int(hi * n)) for s, (lo, hi) in FRACTIONS.items()}
        lo, hi = self.bounds["train"]
        train = self.values[lo:hi]
        present = ~torch.isnan(train)
        count = present.sum(0).clamp_min(1)
        self.mean = torch.where(present, train, 0).sum(0) / count
        var = torch.where(present, (train - self.mean) ** 2, 0).sum(0) / count
        self.std = var.sqrt().where(var > 0, torch.ones_like(var))
        missing = torch.isnan(self.values)
        scaled = ((self.values - self.mean) / self.std).nan_to_num(0.0)
        self.cells = torch.stack([scaled, missing.double()], dim=-1).float()  # [rows, columns, 2]
        self.info = StructuredTaskInfo(vocab_size=0, head="classify", seq_len=len(self.columns),
                                       n_classes=len(self.classes), layout=(len(self.columns),), metric="accuracy",
                                       higher_is_better=True, models=("perceiver", "perceiver_io"), input_features=2)

    def _split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in self.bounds:
            raise DataError(f"unknown split {split!r}; splits are {', '.join(self.bounds)}")
        lo, hi = self.bounds[split]
        return self.cells[lo:hi], self.labels[lo:hi]

    def gradient_boosting_accuracy(self, split: str = "test", seed: int = 0, max_iter: int = 100) -> float:
        """Accuracy on ``split`` of scikit-learn's HistGradientBoostingClassifier (its defaults: ``max_iter``
        boosting rounds) fitted on the training split's raw values (it handles the missing cells itself)."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        lo, hi = self.bounds["train"]
        model = HistGradientBoostingClassifier(random_state=seed, max_iter=max_iter).fit(self.values[lo:hi].numpy(),
                                                                      self.labels[lo:hi].numpy())
        self._split(split)
        a, b = self.bounds[split]
        return float((model.predict(self.values[a:b].numpy()) == self.labels[a:b].numpy()).mean())

    def render(self, batch: dict, i: int) -> str:
        cells = batch["input"][i]
        shown = ", ".join(f"{name}={'?' if m else f'{v:+.2f}'}" for name, (v, m)
                          in zip(self.columns[:6], cells[:6].tolist(), strict=False))
        return f"{shown}{' …' if len(self.columns) > 6 else ''}  =>  {self.classes[int(batch['target'][i])]}"
