"""Masked byte language modelling: BERT's objective (Devlin et al. 2019) on the byte corpus of the
causal LM task (``trevo.tasks.corpus``; vocabulary = 256 bytes + the mask token 256).

Definition followed (BERT §3.1, ``create_pretraining_data``): in every window, round(15%) of the
positions (at least one) are chosen uniformly at random; of those, 80% are replaced by the mask token,
10% by a uniformly random byte and 10% are kept; the model predicts the original byte at the chosen
positions only. Metrics: masked accuracy and bits per byte at the chosen positions (the primary
metric, lower is better). Deviation: bytes instead of WordPiece tokens, one window per example.
Training windows start at random offsets drawn from (seed, step); evaluation windows are spread
evenly over the split and their masks come from a fixed seed.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from trevo.registry import Paper, register
from trevo.tasks.base import BITS_PER_NAT, Batch, Task, TaskInfo, step_generator
from trevo.tasks.corpus import DataError, load_corpus
from trevo.tasks.synthetic import require, split_seed
from trevo.validation import MAX_SEQ_LEN

MASK = 256
BERT = Paper("BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding", "1810.04805", 2019)


def mask_tokens(chunk: torch.Tensor, gen: torch.Generator, rate: float = 0.15) -> Batch:
    """BERT's 80/10/10 corruption of a fraction ``rate`` of the positions of each row of ``chunk``."""
    n, T = chunk.shape
    k = max(1, round(rate * T))
    chosen = torch.rand(n, T, generator=gen).argsort(-1)[:, :k]
    loss_mask = torch.zeros(n, T, dtype=torch.bool).scatter_(1, chosen, True)
    action = torch.rand(n, T, generator=gen)
    random_bytes = torch.randint(0, 256, (n, T), generator=gen)
    corrupted = torch.where(loss_mask & (action < 0.8), torch.full_like(chunk, MASK), chunk)
    corrupted = torch.where(loss_mask & (action >= 0.8) & (action < 0.9), random_bytes, corrupted)
    return {"input": corrupted, "target": chunk, "loss_mask": loss_mask}


@register("task", "mlm", paper=BERT, category="Pretrain", family="language_model")
class MaskedByteLM(Task):
    """Predict 15% of the bytes of a window from both sides (80/10/10 mask/random/keep); bits per byte
    and accuracy on the masked positions."""

    objective = "masked_lm"
    mask_id = MASK

    def __init__(self, seq_len: int = 128, data: str | None = None, val_fraction: float = 0.05,
                 mask_rate: float = 0.15) -> None:
        require(0 < mask_rate < 1, f"mlm: mask_rate must lie in (0, 1), got {mask_rate}")
        require(1 <= seq_len <= MAX_SEQ_LEN, f"mlm: seq_len must lie in [1, {MAX_SEQ_LEN:,}], got {seq_len}")
        require(0 < val_fraction < 0.5, f"mlm: val_fraction must lie in (0, 0.5) (validation and test take it "
                                        f"each, training the rest), got {val_fraction}")
        self.corpus = load_corpus(data, val_fraction)
        for split in ("train", "val", "test"):
            if self.corpus.split(split).numel() <= seq_len:
                raise DataError(f"the {split} split of {self.corpus.source!r} has too few bytes for seq_len={seq_len}; "
                                f"use a shorter seq_len or more data")
        self.seq_len, self.mask_rate = seq_len, mask_rate
        self.info = TaskInfo(vocab_size=257, head="mlm", seq_len=seq_len, causal="forbidden", layout=(seq_len,),
                             metric="bpb", higher_is_better=False)

    def _windows(self, data: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        return data[starts[:, None] + torch.arange(self.seq_len)[None, :]].long()

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        gen = step_generator(seed, step)
        data = self.corpus.train
        starts = torch.randint(0, data.numel() - self.seq_len, (batch_size,), generator=gen)
        return mask_tokens(self._windows(data, starts), gen, self.mask_rate)

    def eval_batches(self, split: str, batch_size: int, n_batches: int) -> Iterator[Batch]:
        data = self.corpus.split(split)
        starts = torch.linspace(0, data.numel() - self.seq_len - 1, batch_size * n_batches).long()
        batch = mask_tokens(self._windows(data, starts), torch.Generator().manual_seed(split_seed(split)),
                            self.mask_rate)
        for b in range(n_batches):
            yield {k: v[b * batch_size:(b + 1) * batch_size] for k, v in batch.items()}

    def finalize(self, totals: dict[str, float]) -> dict[str, float]:
        metrics = super().finalize(totals)
        metrics["bpb"] = metrics["loss"] * BITS_PER_NAT
        return metrics
