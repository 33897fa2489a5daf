"""Causal language modelling over tokens: a byte-level BPE trained on the corpus, a ``tokenizer.json``
of one's own, or pre-tokenized nanoGPT ``.bin`` files (``trevo.tasks.tokenizer``).

Metrics: bits per token (``bpt``, the primary metric), perplexity (``ppl`` = e^loss) and, where the
text is known, bits per byte (``bpb`` = bpt · tokens / bytes of the evaluated split), which compares
across tokenizers. Data is read lazily: building the task (for its ``info``) reads no corpus and
trains no tokenizer; the first batch does.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trevo.registry import Paper, register
from trevo.tasks.base import BITS_PER_NAT, Batch, Task, TaskInfo, step_generator
from trevo.tasks.corpus import DataError, load_corpus
from trevo.tasks.tokenizer import encode_split, load_tokenizer, read_token_file, tokenizer_key, train_bpe

SPLITS = ("train", "val", "test")


@register("task", "token_lm", category="Pretrain", family="language_model",
          paper=Paper("Language Models are Unsupervised Multitask Learners (byte-level BPE, causal LM)", "", 2019))
class TokenLM(Task):
    """Predict each next token; metric: bits per token on validation windows (also bits per byte).

    ``tokenizer``: ``"bpe"`` (train a byte-level BPE of ``vocab_size`` on the training split of
    ``data``), a path to a ``tokenizer.json``, or null (none: only ``tokens`` files can be read).
    ``tokens``: a folder of nanoGPT token files ``train.bin``, ``val.bin`` (and ``test.bin``; without
    it the second half of ``val.bin`` is the test split) of ``token_dtype`` ids, instead of text.
    ``vocab_size``: the model's vocabulary (at least the tokenizer's; the BPE's size when training one)."""

    objective = "causal_lm"

    def __init__(self, seq_len: int = 256, data: str | None = None, tokenizer: str | None = "bpe",
                 vocab_size: int | None = None, tokens: str | None = None, token_dtype: str = "uint16",
                 val_fraction: float = 0.05) -> None:
        self.seq_len, self.data, self.tokenizer_spec = seq_len, data, tokenizer
        self.tokens_dir, self.token_dtype, self.val_fraction = tokens, token_dtype, val_fraction
        if tokens is not None and data is not None:
            raise DataError("token_lm reads either text (data) or token files (tokens), not both")
        own = None
        if tokenizer not in (None, "bpe"):
            own = self.tokenizer.get_vocab_size()
        if vocab_size is None:
            if own is None and tokenizer is None:
                raise DataError("token_lm with token files needs task.vocab_size (the ids' range)")
            vocab_size = own if own is not None else 4096
        if own is not None and vocab_size < own:
            raise DataError(f"task.vocab_size={vocab_size} is smaller than the tokenizer's {own} tokens")
        self.info = TaskInfo(vocab_size=vocab_size, head="lm", seq_len=seq_len, causal="required",
                             layout=(seq_len,), metric="bpt")

    @cached_property
    def tokenizer(self) -> Any:
        """The ``tokenizers.Tokenizer`` (trained on first use for ``tokenizer=bpe``), or None."""
        if self.tokenizer_spec is None:
            return None
        if self.tokenizer_spec == "bpe":
            return train_bpe(self._corpus, self.info.vocab_size)
        return load_tokenizer(self.tokenizer_spec)

    @cached_property
    def _corpus(self):
        return load_corpus(self.data, self.val_fraction)

    @cached_property
    def _splits(self) -> dict[str, np.ndarray]:
        if self.tokens_dir is not None:
            root = Path(self.tokens_dir).expanduser()
            if not root.is_dir():
                raise DataError(f"task.tokens {str(root)!r} is not a folder; it holds train.bin and val.bin")
            splits = {s: read_token_file(root / f"{s}.bin", self.token_dtype) for s in ("train", "val")}
            if (root / "test.bin").is_file():
                splits["test"] = read_token_file(root / "test.bin", self.token_dtype)
            else:
                half = len(splits["val"]) // 2
                splits["val"], splits["test"] = splits["val"][:half], splits["val"][half:]
        elif self.tokenizer is None:
            raise DataError("token_lm without a tokenizer reads only pre-tokenized files: set task.tokens to a "
                            "folder of train.bin/val.bin, or task.tokenizer to bpe or a tokenizer.json")
        else:
            key = tokenizer_key(self.tokenizer)
            splits = {s: encode_split(self.tokenizer, bytes(self._corpus.split(s).numpy()),
                                      f"{key}:{self._corpus.source}:{self.val_fraction}:{s}:"
                                      f"{len(self._corpus.split(s))}") for s in SPLITS}
        for split, ids in splits.items():
            if len(ids) <= self.seq_len + 1:
                raise DataError(f"the {split} split has {len(ids)} tokens, too few for seq_len={self.seq_len}; "
                                f"use a shorter seq_len or more data")
            top = int(ids.max())
            if top >= self.info.vocab_size:
                raise DataError(f"the {split} split holds token id {top}, outside the vocabulary of "
                                f"{self.info.vocab_size}; set task.vocab_size to at least {top + 1}")
        return splits

    def split(self, name: str) -> np.ndarray:
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; splits are {', '.join(SPLITS)}")
        return self._splits[name]

    def bytes_per_token(self, split: str) -> float | None:
        """Bytes of text per token in ``split`` (None for token files, whose text is unknown)."""
        if self.tokens_dir is not None:
            return None
        return len(self._corpus.split(split)) / max(1, len(self.split(split)))

    def _windows(self, data: np.ndarray, starts: np.ndarray) -> Batch:
        chunk = torch.from_numpy(np.asarray(data[starts[:, None] + np.arange(self.seq_len + 1)[None, :]],
                                            dtype=np.int64))
        return {"input": chunk[:, :-1], "target": chunk[:, 1:]}

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        data = self.split("train")
        starts = torch.randint(0, len(data) - self.seq_len - 1, (batch_size,), generator=step_generator(seed, step))
        return self._windows(data, starts.numpy())

    def eval_batches(self, split: str, batch_size: int, n_batches: int) -> Iterator[Batch]:
        data = self.split(split)
        starts = torch.linspace(0, len(data) - self.seq_len - 1, batch_size * n_batches).long().numpy()
        self._last_split = split
        for b in range(n_batches):
            yield self._windows(data, starts[b * batch_size:(b + 1) * batch_size])

    def finalize(self, totals: dict[str, float]) -> dict[str, float]:
        metrics = super().finalize(totals)
        metrics["bpt"] = metrics["loss"] * BITS_PER_NAT
        metrics["ppl"] = math.exp(min(metrics["loss"], 700.0))
        ratio = self.bytes_per_token(getattr(self, "_last_split", "val"))
        if ratio:
            metrics["bpb"] = metrics["bpt"] / ratio
        return metrics

    def encode(self, text: str) -> list[int]:
        if self.tokenizer is None:
            raise DataError("this token_lm task has no tokenizer (token files only); it cannot encode text")
        return self.tokenizer.encode(text).ids

    def decode(self, ids: list[int]) -> str:
        if self.tokenizer is None:
            raise DataError("this token_lm task has no tokenizer (token files only); it cannot decode ids")
        return self.tokenizer.decode(ids)
