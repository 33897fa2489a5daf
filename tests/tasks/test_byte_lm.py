"""Byte-level language modelling: targets are the inputs shifted by one byte of the corpus, batches are
a function of (seed, step), and a user's own text file trains."""

from __future__ import annotations

import torch

from tests.helpers import check_batches_are_a_function_of_seed_and_step
from trevo.registry import create
from trevo.train import train


def test_batches_are_a_function_of_seed_and_step():
    # validation windows are spread over the split, so only the same request repeats
    check_batches_are_a_function_of_seed_and_step("byte_lm", {"seq_len": 16}, prefix_stable=False)


def test_targets_are_the_next_bytes_of_the_corpus(tmp_path):
    text = bytes(range(256)) * 8  # each byte's successor is known: (b + 1) mod 256
    (tmp_path / "bytes.bin").write_bytes(text)
    task = create("task", "byte_lm", seq_len=12, data=str(tmp_path / "bytes.bin"))
    for batch in (task.train_batch(0, 8, 0), next(task.eval_batches("val", 4, 1))):
        assert batch["input"].shape == batch["target"].shape == (batch["input"].shape[0], 12)
        assert torch.equal(batch["target"], (batch["input"] + 1) % 256)
    assert task.info.vocab_size == 256 and task.info.causal == "required"


def test_user_text_file_trains(tmp_path, tiny_cfg):
    (tmp_path / "text.txt").write_text("the quick brown fox jumps over the lazy dog. " * 200)
    result = train(tiny_cfg(f"task.data={tmp_path / 'text.txt'}"), tmp_path / "run", progress=False)
    assert result["final"]["bpb"] > 0
