"""Induction heads, the associative-recall probe of Mamba (Gu & Dao 2023, §4.1.2 and appendix E.1),
after H3 (Fu et al. 2023): a length-extrapolation test.

Definition followed: vocabulary V, whose last token V-1 is the special (trigger) token; every other
position holds a token drawn uniformly from 0 … V-2. Once, at a uniformly random position p in
[0, T-3], the special token is followed by the answer token; the last position T-1 holds the special
token again, and the model must output the answer there (the only scored position).
Models are trained at ``seq_len`` and evaluated at every length in ``eval_lengths`` (plus
``seq_len``): ``finalize`` reports ``acc@L`` for each length L and ``accuracy``, their mean.

Paper size: train at T = 256 with V = 16, test at 2^6 … 2^20, on fresh examples every step (as
here by default; ``train_size`` fixes a training set instead). Where the defaults differ: trained at
T = 64 and tested at 64, 128, 256 and 512. No preset reproduces the paper's lengths (the ``recall``
preset runs the CPU size).
"""

from __future__ import annotations

import torch

from trevo.registry import Paper, register
from trevo.tasks.base import Batch, TaskInfo, cross_entropy, scored_mask
from trevo.tasks.synthetic import LengthGeneralisationTask, require
from trevo.validation import MAX_SEQ_LEN

MAMBA = Paper("Mamba: Linear-Time Sequence Modeling with Selective State Spaces", "2312.00752", 2023)


def induction_examples(gen: torch.Generator, n: int, length: int, vocab_size: int) -> Batch:
    special = vocab_size - 1
    tokens = torch.randint(0, special, (n, length), generator=gen)
    pos = torch.randint(0, length - 2, (n, 1), generator=gen)
    answer = tokens.gather(1, pos + 1)
    tokens.scatter_(1, pos, special)
    tokens[:, -1] = special
    target = torch.zeros(n, length, dtype=torch.long)
    target[:, -1] = answer[:, 0]
    loss_mask = torch.zeros(n, length, dtype=torch.bool)
    loss_mask[:, -1] = True
    return {"input": tokens, "target": target, "loss_mask": loss_mask}


@register("task", "induction", paper=MAMBA, category="Benchmark", family="recall")
class Induction(LengthGeneralisationTask):
    """Recall the token that followed the special token when it appears again; trained at one length,
    accuracy reported at each test length (Mamba's induction-heads task)."""

    def __init__(self, seq_len: int = 64, vocab_size: int = 16,
                 eval_lengths: list[int] | tuple[int, ...] = (64, 128, 256, 512),
                 train_size: int | None = None, test_size: int | None = None,
                 cache_dir: str | None = None) -> None:
        require(vocab_size >= 3, f"induction: vocab_size must be at least 3 (two tokens and the special one), "
                                 f"got {vocab_size}")
        lengths = sorted({int(L) for L in eval_lengths} | {seq_len})
        require(lengths[0] >= 3, f"induction: every length must be at least 3 (trigger, answer, query), "
                                 f"got {lengths[0]}")
        require(lengths[-1] <= MAX_SEQ_LEN, f"induction: every length must be at most {MAX_SEQ_LEN:,}, "
                                            f"got {lengths[-1]}")
        self.seq_len, self.vocab_size, self.eval_lengths = seq_len, vocab_size, tuple(lengths)
        self.params = {"seq_len": seq_len, "vocab_size": vocab_size}
        self.fixed_sets("induction", train_size, test_size, cache_dir)
        self.info = TaskInfo(vocab_size=vocab_size, head="lm", seq_len=seq_len, causal="required",
                             layout=(seq_len,), metric="accuracy", higher_is_better=True)

    def make(self, gen: torch.Generator, n: int, length: int) -> Batch:
        return induction_examples(gen, n, length, self.vocab_size)

    def score(self, logits: torch.Tensor, batch: Batch) -> dict[str, float]:
        length = batch["input"].shape[1]
        mask = scored_mask(batch)
        correct = ((logits.argmax(-1) == batch["target"]) & mask).sum()
        nll = cross_entropy(logits, batch, reduction="sum")
        n = float(mask.sum())
        return {"nll": float(nll), "count": n, "correct": float(correct),
                f"correct@{length}": float(correct), f"count@{length}": n}

    def render(self, batch: Batch, i: int) -> str:
        special = self.vocab_size - 1
        seq = " ".join("*" if t == special else str(t) for t in batch["input"][i].tolist())
        return f"{seq}\n  -> {int(batch['target'][i, -1])}"
