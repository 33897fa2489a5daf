"""Fourier-feature positions (Perceiver, eq. in §3.2): bands from 1 to the Nyquist frequency, features of a
hand-written point, grid coordinates in [−1, 1], distinct points distinct, concat and add combinations."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.components.fourier_positions import fourier_bands, fourier_features, grid_coordinates
from trevo.config import ComponentSpec, ModelConfig
from trevo.errors import IncompatibleError, TrevoError
from trevo.models import build_model
from trevo.registry import create
from trevo.tasks.base import TaskInfo


def test_fourier_bands_span_one_to_nyquist():
    bands = fourier_bands(6, 32)
    assert bands[0] == 1 and bands[-1] == 16  # μ/2
    torch.testing.assert_close(bands.diff(), torch.full((5,), 3.0, dtype=torch.float64))


def test_fourier_features_match_a_hand_written_point():
    x = torch.tensor([[0.25, -0.5]], dtype=torch.float64)
    feats = fourier_features(x, 3, (8, 4))
    f0, f1 = [1.0, 2.5, 4.0], [1.0, 1.5, 2.0]  # linspace(1, μ/2, 3) per axis
    want = ([0.25] + [math.sin(math.pi * f * 0.25) for f in f0] + [math.cos(math.pi * f * 0.25) for f in f0]
            + [-0.5] + [math.sin(-math.pi * f * 0.5) for f in f1] + [math.cos(-math.pi * f * 0.5) for f in f1])
    torch.testing.assert_close(feats[0], torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-15)


def test_grid_positions_are_scaled_to_minus_one_one_per_axis():
    coords = grid_coordinates((3, 5))
    assert coords.shape == (15, 2)
    assert coords[0].tolist() == [-1.0, -1.0] and coords[-1].tolist() == [1.0, 1.0]
    assert coords[1].tolist() == [-1.0, -0.5]  # row-major: the last axis moves fastest


def test_distinct_grid_points_have_distinct_features():
    pos = create("position", "fourier", d_model=8, layout=(8, 8), n_bands=4)
    feats = pos.features(torch.arange(64))
    dist = torch.cdist(feats, feats) + torch.eye(64, dtype=feats.dtype)
    assert dist.min() > 1e-3


def test_fourier_concat_width_and_add_option():
    layout, k, c = (4, 5, 3), 6, 7
    concat = create("position", "fourier", d_model=c, layout=layout, n_bands=k)
    x = torch.randn(2, 60, c)
    y = concat.combine(x, torch.arange(60))
    assert y.shape == (2, 60, c + len(layout) * (2 * k + 1))
    torch.testing.assert_close(y[..., :c], x)
    assert not list(concat.parameters())
    with pytest.raises(IncompatibleError, match="combine=add"):
        concat(torch.arange(4))
    add = create("position", "fourier", d_model=c, layout=layout, n_bands=k, combine="add")
    torch.testing.assert_close(add.combine(x, torch.arange(60)), x + add.proj(add.features(torch.arange(60)).float()))
    with pytest.raises(TrevoError, match="outside the fourier position grid"):
        add.features(torch.tensor([60]))


def test_fourier_add_works_in_a_metaformer():
    cfg = ModelConfig(d_model=16, n_layers=1, max_len=32, position=ComponentSpec("fourier", {"combine": "add"}))
    text = TaskInfo(vocab_size=256, head="lm", seq_len=32, causal="required")
    out = build_model(cfg, text)(torch.zeros(2, 32, dtype=torch.long))
    assert out.shape == (2, text.seq_len, 256)
