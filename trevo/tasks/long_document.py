"""Causal byte LM on long documents read segment by segment, with bits per byte by position in the
segment (where a memory of the previous segments should help most: its first bytes)."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from trevo.registry import Paper, register
from trevo.tasks.base import BITS_PER_NAT, Batch, Task, TaskInfo, cross_entropy, step_generator
from trevo.tasks.corpus import DataError, load_corpus
from trevo.tasks.synthetic import require
from trevo.validation import MAX_SEQ_LEN


@register("task", "long_document_lm", category="Pretrain", family="language_model",
          paper=Paper("Transformer-XL: Attentive Language Models Beyond a Fixed-Length Context (segment-level "
                      "evaluation)", "1901.02860", 2019))
class LongDocumentLM(Task):
    """Predict each next byte of streams of ``segments`` × ``seq_len`` consecutive corpus bytes.

    Training streams start at uniform random offsets drawn from (seed, index); evaluation streams are
    spread evenly over the split. Metrics: ``bpb`` over every byte, ``bpb_head`` over the first ``head``
    bytes of each segment and ``bpb_tail`` over the rest (the split of Rae & Razavi 2020 and of the
    Compressive Transformer's by-position curves: a model without memory starts every segment blind).
    The corpus is the standard library's source unless ``data`` names a file or folder.
    """

    def __init__(self, seq_len: int = 256, segments: int = 4, head: int = 128, data: str | None = None,
                 val_fraction: float = 0.05) -> None:
        require(1 <= seq_len <= MAX_SEQ_LEN, f"long_document_lm: seq_len must lie in [1, {MAX_SEQ_LEN:,}], "
                                             f"got {seq_len}")
        require(segments >= 1, f"long_document_lm: segments must be at least 1, got {segments}")
        require(1 <= head <= seq_len, f"long_document_lm: head must lie in [1, seq_len = {seq_len}], got {head}")
        self.corpus = load_corpus(data, val_fraction)
        self.head = head
        self.stream_len = seq_len * segments
        for split in ("train", "val", "test"):
            if self.corpus.split(split).numel() <= self.stream_len + 1:
                raise DataError(f"the {split} split of {self.corpus.source!r} has {self.corpus.split(split).numel()} "
                                f"bytes, too few for streams of {segments} × {seq_len}; use fewer or shorter "
                                f"segments, or more data")
        self.info = TaskInfo(vocab_size=256, head="lm", seq_len=seq_len, causal="required", layout=(seq_len,),
                             metric="bpb", segments=segments)

    def _streams(self, data: torch.Tensor, starts: torch.Tensor) -> Batch:
        chunk = data[starts[:, None] + torch.arange(self.stream_len + 1)[None, :]].long()
        return {"input": chunk[:, :-1], "target": chunk[:, 1:]}

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        data = self.corpus.train
        starts = torch.randint(0, data.numel() - self.stream_len - 1, (batch_size,),
                               generator=step_generator(seed, step))
        return self._streams(data, starts)

    def eval_batches(self, split: str, batch_size: int, n_batches: int) -> Iterator[Batch]:
        data = self.corpus.split(split)
        starts = torch.linspace(0, data.numel() - self.stream_len - 1, batch_size * n_batches).long()
        for b in range(n_batches):
            yield self._streams(data, starts[b * batch_size:(b + 1) * batch_size])

    def score(self, logits: torch.Tensor, batch: Batch) -> dict[str, float]:
        totals = super().score(logits, batch)
        in_head = (torch.arange(batch["target"].shape[1], device=logits.device) % self.info.seq_len) < self.head
        for name, where in (("head", in_head), ("tail", ~in_head)):
            part = {"target": batch["target"], "loss_mask": where[None].expand_as(batch["target"])}
            totals[f"nll_{name}"] = float(cross_entropy(logits, part, reduction="sum"))
            totals[f"count_{name}"] = float(where.sum()) * batch["target"].shape[0]
        return totals

    def references(self) -> dict[str, float]:
        return {"unigram entropy of the training bytes": self.corpus.unigram_entropy()}

    def finalize(self, totals: dict[str, float]) -> dict[str, float]:
        metrics = super().finalize(totals)
        metrics["bpb"] = metrics["loss"] * BITS_PER_NAT
        for name in ("head", "tail"):
            if totals[f"count_{name}"] > 0:
                metrics[f"bpb_{name}"] = totals[f"nll_{name}"] / totals[f"count_{name}"] * BITS_PER_NAT
        return metrics
