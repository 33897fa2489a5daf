"""Causal byte-level language modelling: vocabulary = the 256 byte values, no tokenizer."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from trevo.registry import Paper, register
from trevo.tasks.base import BITS_PER_NAT, Batch, Task, TaskInfo, step_generator
from trevo.tasks.corpus import DataError, load_corpus
from trevo.tasks.synthetic import require
from trevo.validation import MAX_SEQ_LEN


@register("task", "byte_lm", category="Pretrain", family="language_model",
          paper=Paper("Language Models are Unsupervised Multitask Learners (causal LM objective)", "", 2019))
class ByteLM(Task):
    """Predict each next byte; metric: bits per byte on validation windows (lower is better).

    Training windows start at uniform random offsets (drawn from (seed, step)); validation uses
    ``eval_batches × batch_size`` windows spread evenly over the validation (or test) split."""

    objective = "causal_lm"

    def __init__(self, seq_len: int = 256, data: str | None = None, val_fraction: float = 0.05) -> None:
        require(1 <= seq_len <= MAX_SEQ_LEN, f"byte_lm: seq_len must lie in [1, {MAX_SEQ_LEN:,}], got {seq_len}")
        require(0 < val_fraction < 0.5, f"byte_lm: val_fraction must lie in (0, 0.5) (validation and test take "
                                        f"it each, training the rest), got {val_fraction}")
        self.corpus = load_corpus(data, val_fraction)
        for split, tokens in (("train", self.corpus.train), ("val", self.corpus.val), ("test", self.corpus.test)):
            if tokens.numel() <= seq_len + 1:
                raise DataError(f"the {split} split of {self.corpus.source!r} has {tokens.numel()} bytes, "
                                f"too few for seq_len={seq_len}; use a shorter seq_len or more data")
        self.info = TaskInfo(vocab_size=256, head="lm", seq_len=seq_len, causal="required",
                             layout=(seq_len,), metric="bpb")

    def _windows(self, data: torch.Tensor, starts: torch.Tensor) -> Batch:
        idx = starts[:, None] + torch.arange(self.info.seq_len + 1)[None, :]
        chunk = data[idx].long()
        return {"input": chunk[:, :-1], "target": chunk[:, 1:]}

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        data = self.corpus.train
        starts = torch.randint(0, data.numel() - self.info.seq_len - 1, (batch_size,),
                               generator=step_generator(seed, step))
        return self._windows(data, starts)

    def eval_batches(self, split: str, batch_size: int, n_batches: int) -> Iterator[Batch]:
        data = self.corpus.split(split)
        span = data.numel() - self.info.seq_len - 1
        starts = torch.linspace(0, span, batch_size * n_batches).long()
        for b in range(n_batches):
            yield self._windows(data, starts[b * batch_size:(b + 1) * batch_size])

    def references(self) -> dict[str, float]:
        return {"unigram entropy of the training bytes": self.corpus.unigram_entropy()}

    def finalize(self, totals: dict[str, float]) -> dict[str, float]:
        metrics = super().finalize(totals)
        metrics["bpb"] = metrics["loss"] * BITS_PER_NAT
        return metrics
