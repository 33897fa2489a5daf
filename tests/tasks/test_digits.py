"""Digits: pixel levels, a fixed permutation that keeps the 2-D layout, upsampling, split sizes."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import check_batches_are_a_function_of_seed_and_step, train_two_steps
from trevo.config import ComponentSpec, ModelConfig
from trevo.models import build_model
from trevo.registry import create


def test_batches_are_a_function_of_seed_and_step():
    check_batches_are_a_function_of_seed_and_step("digits", {})


def test_digits_levels_and_fixed_permutation():
    plain = create("task", "digits")
    permuted = create("task", "digits", permuted=True)
    a, b = plain.train_batch(0, 8, 0), permuted.train_batch(0, 8, 0)
    assert torch.equal(a["target"], b["target"]) and torch.equal(a["input"][:, permuted.permutation], b["input"])
    assert int(a["input"].max()) == 255 and int(a["input"].min()) == 0
    assert plain.info.layout == permuted.info.layout == (8, 8)  # a 2-D model still runs on the scrambled grid
    s2mlp = build_model(ModelConfig(d_model=16, n_layers=1, mixer=ComponentSpec("s2mlp")), permuted.info)
    assert s2mlp(b["input"]).shape == (8, 10)
    assert create("task", "digits", upsample=2).info.layout == (16, 16)
    assert sum(len(x["target"]) for x in plain.eval_batches("val", 64, 10)) == 200


@pytest.mark.parametrize("causal", ["true", "false"])
def test_trains_two_steps(tmp_path, causal):
    train_two_steps(tmp_path, {"name": "digits"}, causal)
