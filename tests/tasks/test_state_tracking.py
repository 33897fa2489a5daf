"""The state-tracking generators against independent computations: parity and modular sums by cumulative
sums, S5 by composing permutation arrays one by one; evaluation at the training length and 4×."""

from __future__ import annotations

import itertools

import pytest
import torch

from trevo.registry import create
from trevo.tasks.synthetic import TaskParameterError


def test_parity_labels_are_the_running_xor():
    task = create("task", "parity", seq_len=40)
    batch = task.train_batch(0, 16, 0)
    assert batch["input"].shape == (16, 40) and set(batch["input"].unique().tolist()) <= {0, 1}
    torch.testing.assert_close(batch["target"], batch["input"].cumsum(1) % 2)


@pytest.mark.parametrize("modulus", [2, 3, 7])
def test_modular_addition_labels_are_the_running_sum(modulus):
    batch = create("task", "modular_addition", seq_len=33, modulus=modulus).train_batch(3, 8, 1)
    assert batch["input"].max() < modulus
    torch.testing.assert_close(batch["target"], batch["input"].cumsum(1) % modulus)


@pytest.mark.parametrize("n", [3, 5])
def test_s5_labels_compose_the_permutations_in_order(n):
    """Independently: permutations as lists, the state applied to the identity arrangement one input at a
    time — after x_1 … x_t the state maps i to x_t(…x_1(i)…)."""
    task = create("task", "s5", seq_len=20, n_elements=n)
    perms = list(itertools.permutations(range(n)))
    assert task.info.vocab_size == len(perms) == (120 if n == 5 else 6)
    batch = task.train_batch(1, 6, 0)
    for row, labels in zip(batch["input"].tolist(), batch["target"].tolist(), strict=True):
        state = list(range(n))
        for x, label in zip(row, labels, strict=True):
            p = perms[x]
            state = [p[s] for s in state]
            assert tuple(state) == perms[label]


def test_s5_is_not_abelian_so_the_order_matters():
    task = create("task", "s5", seq_len=4)
    table = task.table
    assert (table != table.T).any()
    assert torch.equal(table[:, 0], torch.arange(120)) and torch.equal(table[0], torch.arange(120))  # identity


def test_evaluation_runs_at_the_training_length_and_four_times_it():
    task = create("task", "parity", seq_len=16)
    assert task.eval_lengths == (16, 64)
    shapes = [b["input"].shape for b in task.eval_batches("val", 4, 2)]
    assert shapes == [(4, 16)] * 2 + [(4, 64)] * 2
    first = next(iter(task.eval_batches("val", 4, 1)))
    again = next(iter(create("task", "parity", seq_len=16, eval_lengths=[16, 128]).eval_batches("val", 4, 1)))
    assert torch.equal(first["input"], again["input"])  # a length's set does not depend on the others
    assert not torch.equal(task.eval_set("val", 4, 16)["input"], task.eval_set("test", 4, 16)["input"])


def test_scores_report_each_length_and_the_final_state():
    task = create("task", "modular_addition", seq_len=8, modulus=3)
    totals: dict[str, float] = {}
    for batch in task.eval_batches("val", 4, 1):
        perfect = torch.nn.functional.one_hot(batch["target"], 3).float() * 10
        perfect[:, -1] = torch.nn.functional.one_hot((batch["target"][:, -1] + 1) % 3, 3).float() * 10  # last wrong
        for key, value in task.score(perfect, batch).items():
            totals[key] = totals.get(key, 0.0) + value
    metrics = task.finalize(totals)
    assert metrics["acc@8"] == pytest.approx(7 / 8) and metrics["acc@32"] == pytest.approx(31 / 32)
    assert metrics["last@8"] == 0.0 and metrics["last@32"] == 0.0
    assert metrics["accuracy"] == pytest.approx((7 / 8 + 31 / 32) / 2)


def test_training_batches_are_a_function_of_seed_and_step():
    task = create("task", "s5", seq_len=12)
    assert torch.equal(task.train_batch(5, 4, 2)["input"], task.train_batch(5, 4, 2)["input"])
    assert not torch.equal(task.train_batch(5, 4, 2)["input"], task.train_batch(6, 4, 2)["input"])


@pytest.mark.parametrize("name,options,words", [
    ("parity", {"seq_len": 0}, "seq_len"),
    ("modular_addition", {"modulus": 1}, "modulus"),
    ("s5", {"n_elements": 9}, "n_elements"),
    ("parity", {"eval_lengths": [0, 8]}, "evaluation length"),
])
def test_bad_options_are_clear_errors(name, options, words):
    with pytest.raises(TaskParameterError, match=words):
        create("task", name, **options)
