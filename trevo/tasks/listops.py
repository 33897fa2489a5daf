"""ListOps as in the Long Range Arena (Tay et al. 2021; after Nangia & Bowman 2018).

Definition followed (LRA's ``listops.py`` generator): a tree is generated top-down; at depth < max_depth
a node is an operator with probability 0.25 (else, and always at max_depth, a digit 0-9 drawn
uniformly); an operator takes 2 … max_args arguments (uniform), each a subtree one level deeper, and is
one of MIN, MAX, MED (the median, rounded down to an integer) and SM (sum modulo 10). An expression
is written in prefix form ``[MAX 2 9 [MIN 4 7 ] 0 ]``; its length counts digits, operators and
closing brackets, and trees are drawn until min_length < length < max_length. The label is the
value of the expression: 10-way classification of the whole sequence, scored by accuracy.

Deviations: LRA's files also carry the parentheses of the generator's binary-tuple encoding, which
hold no information and which the usual preprocessing (e.g. the S4 code base) strips; we never emit
them.

Tokens: 0 = padding, 1 … 10 = digits 0 … 9, 11 … 14 = MIN, MAX, MED, SM, 15 = ``]``. Sequences are
right-padded to ``max_length`` with ``padding_mask`` marking the real tokens.
LRA's protocol (the ``lra`` arena preset reproduces it): max_depth 10, max_args 10, window 500 … 2000,
one set of 100,000 distinct trees split 96,000 / 2,000 / 2,000 (``train_size=96000, test_size=2000``:
duplicates are removed and the splits are disjoint, as in LRA). Where the defaults differ: the window
32 … 128 (trees are shallower, mean depth 6.2 against 9.0, and sequences ~15× shorter: not a long-range
task at the default), and fresh trees every step (``train_size=None``) with evaluation sets of
batch_size × eval_batches trees from fixed seeds (see ``trevo.tasks.synthetic``); the ``lra_small``
preset runs the defaults.
"""

from __future__ import annotations

import random

import torch

from trevo.registry import Paper, register
from trevo.tasks.base import Batch, TaskInfo
from trevo.tasks.synthetic import GeneratedTask, TaskParameterError, numpy_seed, require

LRA = Paper("Long Range Arena: A Benchmark for Efficient Transformers", "2011.04006", 2021)
PAD, DIGIT0, END = 0, 1, 15
OPERATORS = ("MIN", "MAX", "MED", "SM")
OP_TOKEN = {op: 11 + i for i, op in enumerate(OPERATORS)}
VALUE_P = 0.25  # probability that a node above max_depth is an operator
MAX_TRIES = 100_000

Tree = int | tuple[str, list["Tree"]]


def generate_tree(rng: random.Random, depth: int, max_depth: int, max_args: int) -> tuple[Tree, int]:
    """A random tree and its length in tokens (LRA's ``generate_tree``)."""
    if depth < max_depth and rng.random() <= VALUE_P:
        args, length = [], 2
        for _ in range(rng.randint(2, max_args)):
            sub, sub_len = generate_tree(rng, depth + 1, max_depth, max_args)
            args.append(sub)
            length += sub_len
        return (rng.choice(OPERATORS), args), length
    return rng.randrange(10), 1


def evaluate(tree: Tree) -> int:
    if isinstance(tree, int):
        return tree
    op, args = tree
    values = sorted(evaluate(a) for a in args)
    if op == "MIN":
        return values[0]
    if op == "MAX":
        return values[-1]
    if op == "SM":
        return sum(values) % 10
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) // 2


def tokens(tree: Tree) -> list[int]:
    if isinstance(tree, int):
        return [DIGIT0 + tree]
    op, args = tree
    return [OP_TOKEN[op], *(t for a in args for t in tokens(a)), END]


def to_text(ids: list[int]) -> str:
    names = {END: "]", **{v: f"[{k}" for k, v in OP_TOKEN.items()}}
    return " ".join(names.get(t, str(t - DIGIT0)) for t in ids if t != PAD)


@register("task", "listops", paper=LRA, category="Benchmark", family="lra")
class ListOps(GeneratedTask):
    """Evaluate a nested MIN/MAX/MED/SM expression over digits: 10-way classification (LRA ListOps)."""

    dedup = True  # LRA draws one set of distinct trees and splits it 96k / 2k / 2k

    def __init__(self, min_length: int = 32, max_length: int = 128, max_depth: int = 10, max_args: int = 10,
                 cache_dir: str | None = None, train_size: int | None = None, test_size: int | None = None) -> None:
        require(max_args >= 2, f"listops: max_args must be at least 2 (an operator takes 2 or more), got {max_args}")
        require(max_depth >= 2, f"listops: max_depth must be at least 2 (depth 1 is the root), got {max_depth}")
        require(0 <= min_length < max_length - 1,
                f"listops: the window min_length < length < max_length is empty for "
                f"({min_length}, {max_length}); use 0 <= min_length < max_length - 1")
        # The longest tree of this depth and arity: every node up to max_depth an operator of max_args.
        longest = 1
        for _ in range(max_depth - 1):
            longest = 2 + max_args * longest
        require(longest > min_length + 1,
                f"listops: trees of max_depth={max_depth}, max_args={max_args} have at most {longest} tokens, "
                f"none longer than min_length={min_length}; raise max_depth or max_args, or lower min_length")
        self.min_length, self.max_length, self.max_depth, self.max_args = min_length, max_length, max_depth, max_args
        self.params = {"min_length": min_length, "max_length": max_length, "max_depth": max_depth,
                       "max_args": max_args}
        self.fixed_sets("listops", train_size, test_size, cache_dir)
        self.info = TaskInfo(vocab_size=16, head="classify", seq_len=max_length, n_classes=10, causal="either",
                             layout=(max_length,), metric="accuracy", higher_is_better=True)

    def sample(self, rng: random.Random) -> Tree:
        """One tree whose length lies strictly inside the window (rejection sampling, as in LRA)."""
        for _ in range(MAX_TRIES):
            tree, length = generate_tree(rng, 1, self.max_depth, self.max_args)
            if self.min_length < length < self.max_length:
                return tree
        raise TaskParameterError(f"listops: no tree with {self.min_length} < length < {self.max_length} in "
                                 f"{MAX_TRIES} draws; widen the window or change max_depth / max_args")

    def make(self, gen: torch.Generator, n: int) -> Batch:
        rng = random.Random(numpy_seed(gen))
        seqs = torch.full((n, self.max_length), PAD, dtype=torch.long)
        labels = torch.empty(n, dtype=torch.long)
        for i in range(n):
            tree = self.sample(rng)
            ids = tokens(tree)
            seqs[i, :len(ids)] = torch.tensor(ids)
            labels[i] = evaluate(tree)
        return {"input": seqs, "target": labels, "padding_mask": seqs != PAD}

    def render(self, batch: Batch, i: int) -> str:
        return f"{to_text(batch['input'][i].tolist())}  =>  {int(batch['target'][i])}"
