"""Induction heads (Mamba §4.1.2): the answer follows the special token's earlier occurrence, and
accuracy is reported per evaluation length."""

from __future__ import annotations

import torch

from tests.helpers import check_batches_are_a_function_of_seed_and_step, train_two_steps
from trevo.registry import create


def test_batches_are_a_function_of_seed_and_step():
    check_batches_are_a_function_of_seed_and_step("induction", {})


def test_induction_recall_and_per_length_metrics():
    task = create("task", "induction", seq_len=16, vocab_size=8, eval_lengths=[32])
    b = task.train_batch(0, 32, 0)
    for x, y in zip(b["input"], b["target"], strict=True):
        specials = (x == 7).nonzero().flatten().tolist()
        assert len(specials) == 2 and specials[1] == 15 and int(y[-1]) == int(x[specials[0] + 1])
    totals: dict[str, float] = {}
    for batch in task.eval_batches("val", 4, 2):
        logits = torch.nn.functional.one_hot(batch["target"], 8).float()  # a perfect model
        for k, v in task.score(logits, batch).items():
            totals[k] = totals.get(k, 0.0) + v
    metrics = task.finalize(totals)
    assert metrics["acc@16"] == metrics["acc@32"] == metrics["accuracy"] == 1.0


def test_trains_two_steps_and_reports_each_length(tmp_path):
    result = train_two_steps(tmp_path, {"name": "induction", "seq_len": 16, "eval_lengths": [24]}, "true")
    assert {"acc@16", "acc@24"} <= result["final"].keys()
