"""State tracking: the word problems of finite groups, the probes of what a sequence model can compute
in one pass (Merrill, Petty & Sabharwal, "The Illusion of State in State-Space Models",
arXiv:2404.08819; Grazzi et al., "Unlocking State-Tracking in Linear RNNs Through Negative
Eigenvalues", arXiv:2411.12537).

Definition followed: a group G acts on itself; the input is a sequence of group elements x_1 … x_T drawn
uniformly, and the label at every position t is the running product s_t = x_t · s_{t−1} (s_0 the
identity), so every position is scored (per-token accuracy). Three groups:

- ``parity``: Z_2, the running XOR of bits (abelian; solved by a sign-flipping linear RNN, not by a
  diagonal one with positive decays, as Grazzi et al. prove);
- ``modular_addition``: Z_m, the running sum mod ``modulus`` (abelian; a rotation of the state);
- ``s5``: the symmetric group S_n (n = ``n_elements``, 5 by default), the running composition of
  permutations, with inputs and labels the n! permutations in lexicographic order. S_5 is the smallest
  non-solvable group: its word problem is NC¹-complete, beyond transformers and diagonal SSMs of
  fixed depth under standard conjectures (Merrill et al.), tracked by products of Householder
  reflections (DeltaProduct) and by RWKV-7.

Inputs and labels share one vocabulary (the group's elements). Models train at ``seq_len`` and are
evaluated at every length in ``eval_lengths`` (default: ``seq_len`` and 4·``seq_len``, length
generalisation): ``finalize`` reports ``acc@L`` (all positions) and ``last@L`` (the final state only)
for each L, and ``accuracy``, the mean of the ``acc@L``. Evaluating beyond ``seq_len`` needs a model
without a fixed number of positions (no position encoding or RoPE; learned positions hold only
``model.max_len``).

The default is fresh sequences every step (``train_size=None``); ``train_size`` fixes a training set
read in epochs instead. The papers' own data-set sizes and training lengths are not reproduced by any
preset (not checked against their code here); the ``state_tracking`` preset runs the CPU defaults.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch

from trevo.registry import Paper, register
from trevo.tasks.base import Batch, TaskInfo, cross_entropy, scored_mask
from trevo.tasks.synthetic import LengthGeneralisationTask, require

ILLUSION = Paper("The Illusion of State in State-Space Models", "2404.08819", 2024)
NEGATIVE_EIGENVALUES = Paper("Unlocking State-Tracking in Linear RNNs Through Negative Eigenvalues", "2411.12537",
                             2024)


def word_problem(table: torch.Tensor, identity: int, gen: torch.Generator, n: int, length: int) -> Batch:
    """``n`` uniformly random words of ``length`` group elements and their running products:
    ``table[a, b]`` is the index of a · b; the label at t is x_t · x_{t−1} · … · x_1."""
    inputs = torch.randint(0, table.shape[0], (n, length), generator=gen)
    state = torch.full((n,), identity, dtype=torch.long)
    labels = []
    for x in inputs.unbind(1):
        state = table[x, state]
        labels.append(state)
    return {"input": inputs, "target": torch.stack(labels, dim=1)}


class WordProblem(LengthGeneralisationTask):
    """A group word problem trained at ``seq_len`` and evaluated at each of ``eval_lengths``."""

    name = ""

    def __init__(self, table: torch.Tensor, identity: int, seq_len: int,
                 eval_lengths: list[int] | tuple[int, ...] | None, sizes: dict[str, Any]) -> None:
        require(seq_len >= 1, f"{self.name}: seq_len must be at least 1, got {seq_len}")
        lengths = sorted({int(L) for L in (eval_lengths or (seq_len, 4 * seq_len))})
        require(lengths[0] >= 1, f"{self.name}: every evaluation length must be at least 1, got {lengths[0]}")
        self.table, self.identity = table, identity
        self.seq_len, self.eval_lengths = seq_len, tuple(lengths)
        self.params = {"group": self.name, "order": int(table.shape[0]), "seq_len": seq_len}
        self.fixed_sets(self.name, **sizes)
        self.info = TaskInfo(vocab_size=table.shape[0], head="lm", seq_len=seq_len, causal="required",
                             layout=(seq_len,), metric="accuracy", higher_is_better=True)

    def make(self, gen: torch.Generator, n: int, length: int) -> Batch:
        return word_problem(self.table, self.identity, gen, n, length)

    def score(self, logits: torch.Tensor, batch: Batch) -> dict[str, float]:
        length = batch["input"].shape[1]
        right = (logits.argmax(-1) == batch["target"]) & scored_mask(batch)
        n, correct, last = float(right.numel()), float(right.sum()), float(right[:, -1].sum())
        return {"nll": float(cross_entropy(logits, batch, reduction="sum")), "count": n, "correct": correct,
                f"correct@{length}": correct, f"count@{length}": n,
                f"last_correct@{length}": last, f"last_count@{length}": float(right.shape[0])}

    def length_metrics(self, totals: dict[str, float], length: int) -> dict[str, float]:
        return {**super().length_metrics(totals, length),
                f"last@{length}": totals[f"last_correct@{length}"] / totals[f"last_count@{length}"]}

    def references(self) -> dict[str, float]:
        return {"chance": 1.0 / self.table.shape[0]}


def cyclic_table(m: int) -> torch.Tensor:
    """Z_m: a · b = (a + b) mod m."""
    return (torch.arange(m)[:, None] + torch.arange(m)[None, :]) % m


@register("task", "parity", paper=NEGATIVE_EIGENVALUES, category="Benchmark", family="state_tracking")
class Parity(WordProblem):
    """Parity of a bit string at every prefix (the word problem of Z_2); train at ``seq_len``, evaluate at
    ``eval_lengths`` (Grazzi et al. 2024)."""

    name = "parity"

    def __init__(self, seq_len: int = 64, eval_lengths: list[int] | None = None,
                 train_size: int | None = None, test_size: int | None = None,
                 cache_dir: str | None = None) -> None:
        super().__init__(cyclic_table(2), 0, seq_len, eval_lengths,
                         dict(train_size=train_size, test_size=test_size, cache_dir=cache_dir))


@register("task", "modular_addition", paper=NEGATIVE_EIGENVALUES, category="Benchmark", family="state_tracking")
class ModularAddition(WordProblem):
    """The running sum mod ``modulus`` at every prefix (the word problem of Z_m); train at ``seq_len``,
    evaluate at ``eval_lengths``."""

    name = "modular_addition"

    def __init__(self, seq_len: int = 64, modulus: int = 5, eval_lengths: list[int] | None = None,
                 train_size: int | None = None, test_size: int | None = None, cache_dir: str | None = None) -> None:
        require(modulus >= 2, f"modular_addition: modulus must be at least 2, got {modulus}")
        super().__init__(cyclic_table(modulus), 0, seq_len, eval_lengths,
                         dict(train_size=train_size, test_size=test_size, cache_dir=cache_dir))
        self.modulus = modulus


def permutation_table(n: int) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
    """S_n as a Cayley table over its n! permutations in lexicographic order: ``table[a, b]`` is a ∘ b
    (apply b, then a), with a permutation p as the tuple (p(0), …, p(n−1))."""
    perms = list(itertools.permutations(range(n)))
    index = {p: i for i, p in enumerate(perms)}
    table = torch.tensor([[index[tuple(a[b[i]] for i in range(n))] for b in perms] for a in perms])
    return table, perms


@register("task", "s5", paper=ILLUSION, category="Benchmark", family="state_tracking")
class PermutationWordProblem(WordProblem):
    """The running composition of permutations of ``n_elements`` (5: the S_5 word problem of Merrill et al.,
    120 tokens) at every prefix; train at ``seq_len``, evaluate at ``eval_lengths``."""

    name = "s5"

    def __init__(self, seq_len: int = 32, n_elements: int = 5, eval_lengths: list[int] | None = None,
                 train_size: int | None = None, test_size: int | None = None, cache_dir: str | None = None) -> None:
        require(2 <= n_elements <= 6, f"s5: n_elements must be in 2 … 6 (S_n has n! tokens), got {n_elements}")
        table, self.permutations = permutation_table(n_elements)
        super().__init__(table, 0, seq_len, eval_lengths,  # index 0 is the identity (0, 1, …, n−1)
                         dict(train_size=train_size, test_size=test_size, cache_dir=cache_dir))
        self.n_elements = n_elements

    def render(self, batch: Batch, i: int) -> str:
        seq = " ".join("".join(map(str, self.permutations[t])) for t in batch["input"][i].tolist())
        return f"{seq}\n  -> {''.join(map(str, self.permutations[int(batch['target'][i, -1])]))}"
