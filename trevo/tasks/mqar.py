"""Multi-query associative recall (MQAR), the recall probe of Zoology (Arora et al. 2023).

Definition followed (Zoology's ``multiquery_ar`` generator): with vocabulary V and K = V // 2, each
sequence of length T starts with N key-value pairs ``k1 v1 k2 v2 … kN vN``; keys are N distinct
tokens of {1 … K-1} (0 is the filler), values N distinct tokens of {K … V-1}. The rest of the
sequence is filler, except that every key is queried once more: the query slots are the even offsets
2g after the pairs, with the N gaps g drawn without replacement from {0 … (T-2N)/2 - 1} with
probability ∝ a·g^(a-1) (a power law, a = 0.01: most queries come soon after the pairs). The model
must output the key's value at the query position; only those N positions are scored.
``random_filler=True`` is Zoology's harder variant: the filler positions hold uniformly random tokens
instead of 0 (they may collide with keys; such positions are not scored).

Zoology's protocol (Figure 2; the ``zoology`` arena preset reproduces it): (T, N) = (64, 4), (128, 8),
(256, 16) with V = 8192, a fixed training set of 100,000 examples (``train_size=100000``) read for up to
64 epochs with early stopping at validation accuracy 0.99, and a test set of 3,000 (``test_size=3000``).
Where the defaults differ from it: T = 128, N = 8 with V = 64 (smaller embedding tables), and fresh
examples every step (``train_size=None``: infinite data, so sample efficiency and memorisation differ
and accuracies are not comparable with Zoology's). Zoology's generator refuses V ≤ T (it asserts
V > T); here such a vocabulary builds with a ``VocabularyWarning``: with V small, keys repeat as filler
and as other sequences' keys, and Zoology's point that large vocabularies separate architectures is
lost (with ``random_filler``, V = 64 puts about 13 filler copies of a sequence's keys into it, about 0.1
at V = 8192).
"""

from __future__ import annotations

import warnings

import torch

from trevo.registry import Paper, register
from trevo.tasks.base import Batch, TaskInfo
from trevo.tasks.synthetic import GeneratedTask, require
from trevo.validation import MAX_SEQ_LEN


class VocabularyWarning(UserWarning):
    """An MQAR vocabulary that Zoology's generator would refuse (V ≤ T)."""


ZOOLOGY = Paper("Zoology: Measuring and Improving Recall in Efficient Language Models", "2312.04927", 2023)


@register("task", "mqar", paper=ZOOLOGY, category="Benchmark", family="recall")
class MQAR(GeneratedTask):
    """Multi-query associative recall: N key-value pairs, then each key queried again; accuracy on the
    queried positions (Zoology)."""

    def __init__(self, seq_len: int = 128, n_pairs: int = 8, vocab_size: int = 64, power_a: float = 0.01,
                 random_filler: bool = False, train_size: int | None = None, test_size: int | None = None,
                 cache_dir: str | None = None) -> None:
        require(n_pairs >= 1, f"mqar: n_pairs must be at least 1, got {n_pairs}")
        require(seq_len <= MAX_SEQ_LEN, f"mqar: seq_len must be at most {MAX_SEQ_LEN:,}, got {seq_len}")
        require(seq_len % 2 == 0, f"mqar: seq_len must be even (query slots are pairs), got {seq_len}")
        require(4 * n_pairs <= seq_len,
                f"mqar: {n_pairs} pairs do not fit in seq_len={seq_len}: the pairs take 2N positions and the "
                f"N queries need N of the (T-2N)/2 query slots, so T >= 4N = {4 * n_pairs}")
        half = vocab_size // 2
        require(half - 1 >= n_pairs and vocab_size - half >= n_pairs,
                f"mqar: vocab_size={vocab_size} is too small for {n_pairs} distinct keys in 1..V/2-1 and "
                f"values in V/2..V-1; use vocab_size >= {2 * n_pairs + 2}")
        require(power_a > 0, f"mqar: power_a must be positive, got {power_a}")
        if vocab_size <= seq_len:
            warnings.warn(f"mqar: vocab_size={vocab_size} <= seq_len={seq_len}, which Zoology's generator refuses "
                          f"(it requires V > T); keys recur as filler and across sequences, so accuracies are not "
                          f"comparable with Zoology's; use vocab_size > {seq_len} (Zoology: 8192, the zoology "
                          f"preset)", VocabularyWarning, stacklevel=2)
        self.seq_len, self.n_pairs, self.vocab_size = seq_len, n_pairs, vocab_size
        self.power_a, self.random_filler = power_a, random_filler
        self.params = {"seq_len": seq_len, "n_pairs": n_pairs, "vocab_size": vocab_size, "power_a": power_a,
                       "random_filler": random_filler}
        self.fixed_sets("mqar", train_size, test_size, cache_dir)
        slots = (seq_len - 2 * n_pairs) // 2
        g = torch.arange(1, slots + 1, dtype=torch.float64)
        self.gap_p = power_a * g ** (power_a - 1)
        self.info = TaskInfo(vocab_size=vocab_size, head="lm", seq_len=seq_len, causal="required",
                             layout=(seq_len,), metric="accuracy", higher_is_better=True)

    def make(self, gen: torch.Generator, n: int) -> Batch:
        T, N, V, K = self.seq_len, self.n_pairs, self.vocab_size, self.vocab_size // 2
        keys = torch.rand(n, K - 1, generator=gen).argsort(-1)[:, :N] + 1
        values = torch.rand(n, V - K, generator=gen).argsort(-1)[:, :N] + K
        gaps = torch.multinomial(self.gap_p.expand(n, -1), N, replacement=False, generator=gen)
        noise = torch.randint(0, V, (n, T), generator=gen)
        tokens = noise if self.random_filler else torch.zeros(n, T, dtype=torch.long)
        tokens[:, 0:2 * N:2], tokens[:, 1:2 * N:2] = keys, values
        query_pos = 2 * N + 2 * gaps
        tokens.scatter_(1, query_pos, keys)
        target = torch.zeros(n, T, dtype=torch.long).scatter_(1, query_pos, values)
        loss_mask = torch.zeros(n, T, dtype=torch.bool).scatter_(1, query_pos, True)
        return {"input": tokens, "target": target, "loss_mask": loss_mask}

    def render(self, batch: Batch, i: int) -> str:
        """The sequence with each query marked ``key->value`` (filler shown as ``.``)."""
        out = []
        for t, (tok, scored) in enumerate(zip(batch["input"][i].tolist(), batch["loss_mask"][i].tolist(),
                                              strict=True)):
            if scored:
                out.append(f"[{tok}->{int(batch['target'][i, t])}]")
            elif tok == 0 and not self.random_filler and t >= 2 * self.n_pairs:
                out.append(".")
            else:
                out.append(str(tok))
        return " ".join(out)
