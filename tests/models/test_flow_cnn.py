"""flow_cnn: a per-pixel output depends exactly on the pixels within its receptive field (the sum of the
dilations, 1 + 2 + 4 for three layers) and on no other; a task it cannot serve is refused by name."""

from __future__ import annotations

import pytest
import torch

from trevo.config import ModelConfig
from trevo.errors import IncompatibleError
from trevo.models import build_model
from trevo.registry import create


def test_receptive_field_is_the_sum_of_the_dilations():
    task = create("task", "optical_flow", size=20)
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="flow_cnn", d_model=6, n_layers=3), task.info).double()
    x = torch.randn(1, 400, 18, dtype=torch.float64, requires_grad=True)
    model(x)[0, 10 * 20 + 9, 0].backward()  # the u output at row 10, column 9
    touched = (x.grad[0].abs().sum(-1) > 0).reshape(20, 20).nonzero()
    radius = 1 + 2 + 4
    assert touched[:, 0].min() == 10 - radius and touched[:, 0].max() == 10 + radius
    assert touched[:, 1].min() == 9 - radius and touched[:, 1].max() == 9 + radius


def test_refuses_tasks_without_per_pixel_regression():
    with pytest.raises(IncompatibleError, match="flow_cnn regresses"):
        build_model(ModelConfig(arch="flow_cnn", d_model=8, n_layers=2), create("task", "digits").info)
