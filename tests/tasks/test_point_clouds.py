"""point_clouds: the sampled surfaces satisfy their shapes' equations, rotations are rotations, batches
are a function of (seed, step), and a Perceiver's output does not depend on the order of the points."""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers import train_two_steps_of
from trevo.config import ComponentSpec, ModelConfig
from trevo.errors import IncompatibleError, TrevoError
from trevo.models import build_model
from trevo.registry import create
from trevo.tasks.point_clouds import SHAPES, random_rotation, sample_shape

GEN = torch.Generator


@pytest.mark.parametrize("size", [0.55, 0.9])
def test_surfaces_satisfy_their_equations(size):
    n = 500
    p = sample_shape("sphere", n, size, GEN().manual_seed(0))
    torch.testing.assert_close(p.norm(dim=1), torch.full((n,), size, dtype=torch.float64))
    p = sample_shape("cube", n, size, GEN().manual_seed(1))  # on a face: the largest |coordinate| is the half-side
    torch.testing.assert_close(p.abs().max(dim=1).values, torch.full((n,), 0.6 * size, dtype=torch.float64))
    p = sample_shape("torus", n, size, GEN().manual_seed(2))  # (√(x²+y²) − R)² + z² = r²
    ring = p[:, :2].norm(dim=1)
    torch.testing.assert_close((ring - 0.65 * size) ** 2 + p[:, 2] ** 2,
                               torch.full((n,), (0.3 * size) ** 2, dtype=torch.float64))
    p = sample_shape("cylinder", n, size, GEN().manual_seed(3))  # on the side, or on a cap
    r, h = 0.55 * size, 0.7 * size
    side = (p[:, :2].norm(dim=1) - r).abs() < 1e-12
    cap = ((p[:, 2].abs() - h).abs() < 1e-12) & (p[:, :2].norm(dim=1) <= r + 1e-12)
    assert bool((side | cap).all()) and 0 < int(cap.sum()) < n
    assert bool((p[side, 2].abs() <= h + 1e-12).all())
    p = sample_shape("cone", n, size, GEN().manual_seed(4))  # √(x²+y²) = r (h − z) / 2h on the side, or the base
    r, h = 0.6 * size, 0.7 * size
    side = (p[:, :2].norm(dim=1) - r * (h - p[:, 2]) / (2 * h)).abs() < 1e-12
    base = ((p[:, 2] + h).abs() < 1e-12) & (p[:, :2].norm(dim=1) <= r + 1e-12)
    assert bool((side | base).all()) and 0 < int(base.sum()) < n


def test_cylinder_points_spread_by_area():
    """The side holds 2πr·2h of the area 2πr·2h + 2πr²: that fraction of the points, within 4 standard errors."""
    n, r, h = 20_000, 0.55, 0.7
    p = sample_shape("cylinder", n, 1.0, GEN().manual_seed(5))
    on_side = float(((p[:, 2].abs() - h).abs() > 1e-12).double().mean())
    want = 4 * math.pi * r * h / (4 * math.pi * r * h + 2 * math.pi * r * r)
    assert abs(on_side - want) < 4 * math.sqrt(want * (1 - want) / n)


def test_rotations_are_proper_and_uniform():
    rots = torch.stack([random_rotation(GEN().manual_seed(s)) for s in range(400)])
    eye = torch.eye(3, dtype=torch.float64).expand(400, 3, 3)
    torch.testing.assert_close(rots @ rots.transpose(1, 2), eye)
    torch.testing.assert_close(torch.det(rots), torch.ones(400, dtype=torch.float64))
    # Haar measure: E[R] = 0 (each entry's standard deviation is 1/√3; 400 draws → within 4 × 0.029)
    assert float(rots.mean(0).abs().max()) < 4 / math.sqrt(3 * 400)


def test_batches_are_labelled_shapes_a_function_of_seed_and_step():
    task = create("task", "point_clouds", n_points=32, noise=0.0)
    a, b = task.train_batch(3, 6, 7), task.train_batch(3, 6, 7)
    assert torch.equal(a["input"], b["input"]) and torch.equal(a["target"], b["target"])
    assert not torch.equal(a["input"], task.train_batch(4, 6, 7)["input"])
    assert a["input"].shape == (6, 32, 3) and a["input"].dtype == torch.float32
    spheres = a["target"] == SHAPES.index("sphere")
    norms = a["input"].double().norm(dim=-1)  # a rotated noise-free sphere keeps one radius per cloud
    assert bool((norms[spheres].std(dim=1) < 1e-6).all())
    assert bool(norms.max() <= 0.9 + 1e-6)
    assert sum(1 for _ in task.eval_batches("val", 10, 100)) == 26  # 256 clouds in batches of 10


def _model(arch, info, position="none"):
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, d_model=16, n_layers=1, position=ComponentSpec(position),
                      options={"n_latents": 4, "coordinate_bands": 3})
    return build_model(cfg, info).double().eval()


@pytest.mark.parametrize("arch", ["perceiver", "perceiver_io"])
def test_output_does_not_depend_on_the_order_of_the_points(arch):
    task = create("task", "point_clouds", n_points=40)
    x = task.train_batch(0, 3, 0)["input"].double()
    model = _model(arch, task.info)
    perm = torch.randperm(40, generator=GEN().manual_seed(1))
    out, shuffled = model(x), model(x[:, perm])
    torch.testing.assert_close(shuffled, out, rtol=0, atol=1e-12)
    moved = x.clone()
    moved[:, 0] += 0.05  # control: the output does depend on the points themselves
    assert (model(moved) - out).abs().max() > 1e-6


def test_index_positions_are_refused_and_bad_input_named():
    info = create("task", "point_clouds").info
    with pytest.raises(IncompatibleError, match="model.position=none"):
        _model("perceiver", info, position="learned")
    model = _model("perceiver", info)
    with pytest.raises(TrevoError, match=r"\[batch, elements, 3\]"):
        model(torch.randint(0, 3, (2, 128)))
    with pytest.raises(TrevoError, match="n_points"):
        create("task", "point_clouds", n_points=2)


def test_trains_through_the_training_loop(tmp_path):
    result = train_two_steps_of(
        tmp_path / "run", "task.name=point_clouds", "task.n_points=16", "task.eval_size=4", "model.arch=perceiver")
    assert result["metric"] in result["final"]
