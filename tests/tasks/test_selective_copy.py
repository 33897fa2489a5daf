"""Selective copying (Mamba §4.1.1): the targets are the data tokens in order, after the markers."""

from __future__ import annotations

import pytest

from tests.helpers import check_batches_are_a_function_of_seed_and_step, train_two_steps
from trevo.errors import TrevoError
from trevo.registry import create


def test_batches_are_a_function_of_seed_and_step():
    check_batches_are_a_function_of_seed_and_step("selective_copy", {})


def test_selective_copy_targets_are_the_data_tokens_in_order():
    task = create("task", "selective_copy", seq_len=48, n_data=6, vocab_size=10)
    b = task.train_batch(0, 32, 1)
    for x, y, m in zip(b["input"], b["target"], b["loss_mask"], strict=True):
        region = x[:42]
        assert y[m].tolist() == region[region != 0].tolist() and len(region[region != 0]) == 6
        assert bool((x[42:] == 9).all()) and bool(m[42:].all()) and not bool(m[:42].any())
        assert bool(((region >= 0) & (region <= 8)).all())
    with pytest.raises(TrevoError, match="do not fit"):
        create("task", "selective_copy", seq_len=10, n_data=6)


def test_trains_two_steps(tmp_path):
    train_two_steps(tmp_path, {"name": "selective_copy", "seq_len": 24, "n_data": 4}, "true")
