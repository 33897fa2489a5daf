"""ListOps (LRA): every label equals an independent evaluator of the prefix expression, lengths lie
in the window, bad windows are refused."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import check_batches_are_a_function_of_seed_and_step, train_two_steps
from trevo.errors import TrevoError
from trevo.registry import create


def test_batches_are_a_function_of_seed_and_step():
    check_batches_are_a_function_of_seed_and_step("listops", {})


def _parse(tokens: list[int], i: int = 0) -> tuple[int, int]:
    """An independent evaluator of the prefix token form: returns (value, next index)."""
    t = tokens[i]
    if 1 <= t <= 10:
        return t - 1, i + 1
    args, i = [], i + 1
    while tokens[i] != 15:
        v, i = _parse(tokens, i)
        args.append(v)
    op = {11: "MIN", 12: "MAX", 13: "MED", 14: "SM"}[t]
    value = {"MIN": min(args), "MAX": max(args), "SM": sum(args) % 10,
             "MED": int(np.median(args))}[op]
    return value, i + 1


def test_listops_labels_and_length_window():
    task = create("task", "listops", min_length=20, max_length=60, max_depth=6, max_args=5)
    b = task.train_batch(0, 64, 0)
    lengths = b["padding_mask"].sum(1)
    assert bool(((lengths > 20) & (lengths < 60)).all())
    for x, y, n in zip(b["input"], b["target"], lengths, strict=True):
        tokens = x[:n].tolist()
        value, end = _parse(tokens)
        assert end == n and value == int(y)
        assert bool((x[n:] == 0).all())
    assert len(set(b["target"].tolist())) > 3
    with pytest.raises(TrevoError, match="empty"):
        create("task", "listops", min_length=50, max_length=50)
    with pytest.raises(TrevoError, match="at most"):
        create("task", "listops", min_length=500, max_length=2000, max_depth=2, max_args=3)


@pytest.mark.parametrize("causal", ["true", "false"])
def test_trains_two_steps(tmp_path, causal):
    train_two_steps(tmp_path, {"name": "listops", "min_length": 4, "max_length": 24, "max_depth": 4}, causal)
