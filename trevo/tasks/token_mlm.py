"""Masked language modelling over token ids: bytes shifted by ``byte_offset`` (the language Perceiver's
byte ids: 6 special tokens, then the 256 bytes, mask id 3) or a ``tokenizer.json``'s tokens.

BERT's corruption (Devlin et al. 2019, §3.1, as ``trevo.tasks.mlm``): in every window round(15%) of
the positions (at least one) are chosen uniformly; 80% of them become ``mask_id``, 10% a uniformly
random content token, 10% stay; the original tokens are predicted at the chosen positions only.
Metric: bits per token at the masked positions (``bpt``; bits per byte for byte ids, where a token is
a byte). Data is read lazily, on the first batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from typing import Any

import numpy as np
import torch

from trevo.registry import register
from trevo.tasks.base import BITS_PER_NAT, Batch, Task, TaskInfo, step_generator
from trevo.tasks.corpus import DataError, load_corpus
from trevo.tasks.mlm import BERT
from trevo.tasks.synthetic import require, split_seed
from trevo.tasks.tokenizer import encode_split, load_tokenizer, tokenizer_key

MASK_NAMES = ("[MASK]", "<mask>", "<MASK>")


def corrupt(chunk: torch.Tensor, gen: torch.Generator, rate: float, mask_id: int, low: int, high: int) -> Batch:
    """BERT's 80/10/10 corruption of a fraction ``rate`` of each row; random tokens from [low, high)."""
    n, t = chunk.shape
    k = max(1, round(rate * t))
    chosen = torch.rand(n, t, generator=gen).argsort(-1)[:, :k]
    loss_mask = torch.zeros(n, t, dtype=torch.bool).scatter_(1, chosen, True)
    action = torch.rand(n, t, generator=gen)
    random_tokens = torch.randint(low, high, (n, t), generator=gen)
    corrupted = torch.where(loss_mask & (action < 0.8), torch.full_like(chunk, mask_id), chunk)
    corrupted = torch.where(loss_mask & (action >= 0.8) & (action < 0.9), random_tokens, corrupted)
    return {"input": corrupted, "target": chunk, "loss_mask": loss_mask}


@register("task", "token_mlm", paper=BERT, category="Pretrain", family="language_model")
class TokenMLM(Task):
    """Masked LM over byte ids (offset by ``byte_offset``) or a tokenizer's ids; bits per token at the masks."""

    objective = "masked_lm"

    def __init__(self, seq_len: int = 128, data: str | None = None, tokenizer: str | None = None,
                 byte_offset: int = 0, mask_id: int | None = None, vocab_size: int | None = None,
                 mask_rate: float = 0.15, val_fraction: float = 0.05) -> None:
        require(0 < mask_rate < 1, f"token_mlm: mask_rate must lie in (0, 1), got {mask_rate}")
        self.seq_len, self.data, self.tokenizer_spec = seq_len, data, tokenizer
        self.byte_offset, self.mask_rate, self.val_fraction = byte_offset, mask_rate, val_fraction
        if tokenizer is None:
            self.content = (byte_offset, byte_offset + 256)
            mask_id = byte_offset + 256 if mask_id is None else mask_id
            vocab_size = max(self.content[1], mask_id + 1) if vocab_size is None else vocab_size
        else:
            own = self.tokenizer.get_vocab_size()
            found = [self.tokenizer.token_to_id(m) for m in MASK_NAMES if self.tokenizer.token_to_id(m) is not None]
            mask_id = mask_id if mask_id is not None else (found[0] if found else own)
            vocab_size = max(own, mask_id + 1) if vocab_size is None else vocab_size
            self.content = (0, own)
        self.mask_id = mask_id
        self.info = TaskInfo(vocab_size=vocab_size, head="mlm", seq_len=seq_len, causal="forbidden",
                             layout=(seq_len,), metric="bpt")

    @cached_property
    def tokenizer(self) -> Any:
        return None if self.tokenizer_spec is None else load_tokenizer(self.tokenizer_spec)

    @cached_property
    def _splits(self) -> dict[str, np.ndarray]:
        if self.tokenizer is None and self.content[1] > self.info.vocab_size:
            raise DataError(f"byte ids {self.content[0]}..{self.content[1] - 1} do not fit the vocabulary of "
                            f"{self.info.vocab_size}; this model reads another tokenization (give task.tokenizer)")
        corpus = load_corpus(self.data, self.val_fraction)
        splits = {}
        for s in ("train", "val", "test"):
            raw = corpus.split(s).numpy()
            if self.tokenizer is None:
                splits[s] = raw.astype(np.int64) + self.byte_offset
            else:
                key = f"{tokenizer_key(self.tokenizer)}:{corpus.source}:{self.val_fraction}:{s}:{len(raw)}"
                splits[s] = encode_split(self.tokenizer, bytes(raw), key)
            if len(splits[s]) <= self.seq_len:
                raise DataError(f"the {s} split has {len(splits[s])} tokens, too few for seq_len={self.seq_len}")
        return splits

    def _windows(self, data: np.ndarray, starts: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(data[starts[:, None] + np.arange(self.seq_len)[None, :]], dtype=np.int64))

    def _corrupt(self, chunk: torch.Tensor, gen: torch.Generator) -> Batch:
        return corrupt(chunk, gen, self.mask_rate, self.mask_id, *self.content)

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        gen = step_generator(seed, step)
        data = self._splits["train"]
        starts = torch.randint(0, len(data) - self.seq_len, (batch_size,), generator=gen).numpy()
        return self._corrupt(self._windows(data, starts), gen)

    def eval_batches(self, split: str, batch_size: int, n_batches: int) -> Iterator[Batch]:
        if split not in self._splits:
            raise DataError(f"unknown split {split!r}; splits are train, val, test")
        data = self._splits[split]
        starts = torch.linspace(0, len(data) - self.seq_len - 1, batch_size * n_batches).long().numpy()
        batch = self._corrupt(self._windows(data, starts), torch.Generator().manual_seed(split_seed(split)))
        for b in range(n_batches):
            yield {k: v[b * batch_size:(b + 1) * batch_size] for k, v in batch.items()}

    def finalize(self, totals: dict[str, float]) -> dict[str, float]:
        metrics = super().finalize(totals)
        metrics["bpt"] = metrics["loss"] * BITS_PER_NAT
        return metrics
