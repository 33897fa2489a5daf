"""Long-document byte LM: streams of consecutive bytes, bits per byte split by position in the segment."""

from __future__ import annotations

import math

import torch

from tests.helpers import check_batches_are_a_function_of_seed_and_step, train_two_steps
from trevo.registry import create
from trevo.tasks.base import step_generator


def test_batches_are_a_function_of_seed_and_step():
    check_batches_are_a_function_of_seed_and_step("long_document_lm", {"seq_len": 16, "segments": 3, "head": 4},
                                                   prefix_stable=False)


def test_streams_are_consecutive_bytes_of_the_corpus():
    task = create("task", "long_document_lm", seq_len=8, segments=3, head=4)
    b = task.train_batch(0, 2, 0)
    assert b["input"].shape == (2, 24) and torch.equal(b["input"][:, 1:], b["target"][:, :-1])
    data = task.corpus.train.long()
    starts = torch.randint(0, data.numel() - 25, (2,), generator=step_generator(0, 0))
    for row, start in zip(b["input"], starts.tolist(), strict=True):
        assert torch.equal(data[start:start + 24], row)


def test_bits_per_byte_by_position_bucket_hand_checked():
    task = create("task", "long_document_lm", seq_len=4, segments=2, head=1)
    batch = task.train_batch(0, 3, 0)
    logits = torch.zeros(3, 8, 256)  # uniform: 8 bits per byte …
    tail = (torch.arange(8) % 4) >= 1
    logits[:, tail] = 1e4 * torch.nn.functional.one_hot(batch["target"][:, tail], 256).float()  # … but exact here
    metrics = task.finalize(task.score(logits, batch))
    assert math.isclose(metrics["bpb_head"], 8.0, rel_tol=1e-6) and metrics["bpb_tail"] < 1e-6
    assert math.isclose(metrics["bpb"], 8.0 * 2 / 8, rel_tol=1e-6)  # 2 of 8 bytes per row in the head


def test_trains_two_steps(tmp_path):
    result = train_two_steps(tmp_path, {"name": "long_document_lm", "seq_len": 8, "segments": 2, "head": 4}, "true")
    assert {"bpb_head", "bpb_tail"} <= set(result["final"])
