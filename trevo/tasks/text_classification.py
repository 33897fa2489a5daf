"""Text classification from the user's own JSONL or CSV file: one example per row, with a ``text``
and a ``label`` field (names configurable); metric accuracy.

Text is read as UTF-8 bytes (vocabulary 256) or through a ``tokenizer.json``; each example is cut to
``seq_len`` tokens and padded (``padding_mask`` False at the padding). Labels may be strings or
integers; the classes are their sorted distinct values. Splits: a folder holding ``train``, ``val``
and ``test`` files (``.jsonl`` or ``.csv``) is used as given; a single file is split by a hash of each
row's text (the first byte h of its SHA-256: validation when h < 256·f, test when h < 512·f, train
otherwise), so the split never depends on row order. ``all`` is every row (what ``trevo eval --data``
scores).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from trevo.registry import Paper, register
from trevo.tasks.base import Batch, Task, TaskInfo, step_generator
from trevo.tasks.corpus import DataError
from trevo.tasks.tokenizer import load_tokenizer

SUFFIXES = (".jsonl", ".csv")


def read_rows(path: Path, text_field: str, label_field: str) -> list[tuple[str, str]]:
    """(text, label) of every row of a JSONL or CSV file, with a clear error for each kind of bad row."""
    if path.suffix not in SUFFIXES:
        raise DataError(f"{path}: text classification reads .jsonl or .csv files, got {path.suffix or 'no suffix'!r}")
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path} as UTF-8 text: {e}") from None
    if path.suffix == ".csv":
        records = list(csv.DictReader(raw.splitlines()))
        numbered = [(i + 2, r) for i, r in enumerate(records)]  # line 1 is the header
    else:
        numbered = []
        for i, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{i} is not valid JSON ({e.msg}); each line is one {{\"{text_field}\": …, "
                                f"\"{label_field}\": …}} object") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{i} is not a JSON object")
            numbered.append((i, record))
    if not numbered:
        raise DataError(f"{path} holds no examples; each row needs a {text_field!r} and a {label_field!r}")
    rows = []
    for line, record in numbered:
        text, label = record.get(text_field), record.get(label_field)
        if text is None or (isinstance(text, str) and not text):
            raise DataError(f"{path}:{line} has no {text_field!r}; every example needs its text "
                            f"(or set task.text_field to the column that holds it)")
        if label is None or label == "":
            raise DataError(f"{path}:{line} is unlabelled (no {label_field!r}); every example needs a label "
                            f"(or set task.label_field to the column that holds it)")
        rows.append((str(text), str(label)))
    return rows


def _split_of(text: str, fraction: float) -> str:
    h = hashlib.sha256(text.encode()).digest()[0]
    return "val" if h < 256 * fraction else "test" if h < 512 * fraction else "train"


@register("task", "text_classification", category="Benchmark", family="classification",
          paper=Paper("Long Range Arena (byte-level text classification)", "2011.04006", 2020))
class TextClassification(Task):
    """Classify each row's text (bytes or tokens) of a JSONL/CSV file; accuracy."""

    def __init__(self, data: str | None = None, seq_len: int = 256, text_field: str = "text",
                 label_field: str = "label", tokenizer: str | None = None, val_fraction: float = 0.1) -> None:
        if data is None:
            raise DataError("text_classification needs task.data: a .jsonl or .csv file (or a folder of train/val/"
                            "test files) with a 'text' and a 'label' per row")
        root = Path(data).expanduser()
        if not root.exists():
            raise DataError(f"data path {str(root)!r} does not exist")
        self.tokenizer = None if tokenizer is None else load_tokenizer(tokenizer)
        if root.is_dir():
            splits = {}
            for split in ("train", "val", "test"):
                found = [root / f"{split}{s}" for s in SUFFIXES if (root / f"{split}{s}").is_file()]
                if not found:
                    raise DataError(f"{root} has no {split}.jsonl or {split}.csv; a folder holds train, val and test")
                splits[split] = read_rows(found[0], text_field, label_field)
        else:
            rows = read_rows(root, text_field, label_field)
            splits = {"train": [], "val": [], "test": []}
            for row in rows:
                splits[_split_of(row[0], val_fraction)].append(row)
        splits["all"] = [r for s in ("train", "val", "test") for r in splits[s]]
        self.classes = sorted({label for _, label in splits["all"]})
        if len(self.classes) < 2:
            raise DataError(f"{root} has one class ({self.classes[0]!r}); classification needs at least two labels")
        index = {c: i for i, c in enumerate(self.classes)}
        self.splits = {s: self._encode(rows, index, seq_len) for s, rows in splits.items()}
        empty = [s for s in ("train", "val", "test") if not len(self.splits[s][2])]
        if empty:
            raise DataError(f"{root}: no example fell in the {' and '.join(empty)} split; give more examples, "
                            f"or a folder with train, val and test files")
        vocab = 256 if self.tokenizer is None else self.tokenizer.get_vocab_size()
        self.info = TaskInfo(vocab_size=vocab, head="classify", seq_len=seq_len, n_classes=len(self.classes),
                             causal="either", layout=(seq_len,), metric="accuracy", higher_is_better=True)

    def _ids(self, text: str) -> list[int]:
        return list(text.encode("utf-8")) if self.tokenizer is None else self.tokenizer.encode(text).ids

    def _encode(self, rows: list[tuple[str, str]], index: dict[str, int], seq_len: int) -> tuple[Any, Any, Any]:
        tokens = torch.zeros(len(rows), seq_len, dtype=torch.long)
        mask = torch.zeros(len(rows), seq_len, dtype=torch.bool)
        for i, (text, _) in enumerate(rows):
            ids = self._ids(text)[:seq_len]
            tokens[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[i, :len(ids)] = True
        return tokens, mask, torch.tensor([index[label] for _, label in rows], dtype=torch.long)

    def _split(self, split: str):
        if split not in self.splits:
            raise DataError(f"unknown split {split!r}; splits are {', '.join(self.splits)}")
        return self.splits[split]

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        tokens, mask, labels = self._split("train")
        idx = torch.randint(0, len(labels), (batch_size,), generator=step_generator(seed, step))
        return {"input": tokens[idx], "padding_mask": mask[idx], "target": labels[idx]}

    def eval_batches(self, split: str, batch_size: int, n_batches: int) -> Iterator[Batch]:
        tokens, mask, labels = self._split(split)
        for start in range(0, min(len(labels), batch_size * n_batches), batch_size):
            stop = start + batch_size
            yield {"input": tokens[start:stop], "padding_mask": mask[start:stop], "target": labels[start:stop]}
