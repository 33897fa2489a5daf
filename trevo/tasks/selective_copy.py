"""Selective copying, the synthetic task of Mamba (Gu & Dao 2023, §3.1 and appendix E.1).

Definition followed (the generator of the Mamba / S4 code, ``torch_copying_data`` with
``variable=True``): vocabulary V, with 0 the noise (blank) token, 1 … V-2 the data tokens and V-1
the marker. M data tokens, drawn uniformly from 1 … V-2, are written in order at M sorted random
positions of a noise region of length T - M; then come M markers. At the i-th marker the model must
output the i-th data token: the targets are the data tokens in order, scored (per-token accuracy)
at the M marker positions only. Because the data positions vary, a time-invariant convolution
cannot solve it; a model must select by content.

Paper size: T = 4096 (4080 + 16), V = 16, M = 16, trained on fresh examples (Mamba's generator draws
every batch anew; MAD trains on a fixed set, ``train_size``). Where the defaults differ: T = 128 with
the paper's V and M. No preset reproduces the paper's length; ``recall`` and ``mad`` run it at T ≤ 256.
"""

from __future__ import annotations

import torch

from trevo.registry import register
from trevo.tasks.base import Batch, TaskInfo
from trevo.tasks.induction import MAMBA
from trevo.tasks.synthetic import GeneratedTask, require
from trevo.validation import MAX_SEQ_LEN


@register("task", "selective_copy", paper=MAMBA, category="Benchmark", family="recall")
class SelectiveCopy(GeneratedTask):
    """Reproduce the data tokens scattered among noise tokens, in order, at the markers (Mamba)."""

    def __init__(self, seq_len: int = 128, n_data: int = 16, vocab_size: int = 16,
                 train_size: int | None = None, test_size: int | None = None,
                 cache_dir: str | None = None) -> None:
        require(n_data >= 1, f"selective_copy: n_data must be at least 1, got {n_data}")
        require(vocab_size >= 3, f"selective_copy: vocab_size must be at least 3 (noise, a data token, marker), "
                                 f"got {vocab_size}")
        require(seq_len <= MAX_SEQ_LEN, f"selective_copy: seq_len must be at most {MAX_SEQ_LEN:,}, got {seq_len}")
        require(seq_len >= 2 * n_data,
                f"selective_copy: {n_data} data tokens and {n_data} markers do not fit in seq_len={seq_len}; "
                f"use seq_len >= {2 * n_data}")
        self.seq_len, self.n_data, self.vocab_size = seq_len, n_data, vocab_size
        self.params = {"seq_len": seq_len, "n_data": n_data, "vocab_size": vocab_size}
        self.fixed_sets("selective_copy", train_size, test_size, cache_dir)
        self.info = TaskInfo(vocab_size=vocab_size, head="lm", seq_len=seq_len, causal="required",
                             layout=(seq_len,), metric="accuracy", higher_is_better=True)

    def make(self, gen: torch.Generator, n: int) -> Batch:
        T, M, V = self.seq_len, self.n_data, self.vocab_size
        region = T - M
        data = torch.randint(1, V - 1, (n, M), generator=gen)
        positions = torch.rand(n, region, generator=gen).argsort(-1)[:, :M].sort(-1).values
        tokens = torch.zeros(n, T, dtype=torch.long)
        tokens.scatter_(1, positions, data)
        tokens[:, region:] = V - 1
        target = torch.zeros(n, T, dtype=torch.long)
        target[:, region:] = data
        loss_mask = torch.zeros(n, T, dtype=torch.bool)
        loss_mask[:, region:] = True
        return {"input": tokens, "target": target, "loss_mask": loss_mask}

    def render(self, batch: Batch, i: int) -> str:
        V = self.vocab_size
        seq = " ".join("." if t == 0 else "|" if t == V - 1 else str(t) for t in batch["input"][i].tolist())
        answer = " ".join(str(t) for t in batch["target"][i][batch["loss_mask"][i]].tolist())
        return f"{seq}\n  -> {answer}"
