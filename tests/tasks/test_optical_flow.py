"""optical_flow: the ground truth is exact (integer translations move frame 1 onto frame 2 wherever a
pixel stays visible; rotation about a layer's centre moves the centre by the shift alone), occlusions are
where they must be, the patches and the EPE metric follow their formulas, the colour wheel is the standard
one, and both models decode one (u, v) per pixel."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.helpers import train_two_steps_of
from trevo.config import ComponentSpec, ModelConfig
from trevo.models import build_model
from trevo.registry import create
from trevo.tasks.optical_flow import Layer, flow_colours, patches, render

TEX = {"base": 0.5, "amps": (0.2, 0.15), "freqs": ((0.13, 0.05), (-0.07, 0.17)), "phases": (0.3, 1.1)}


def test_integer_translation_moves_frame_one_onto_frame_two_where_visible():
    h = w = 12
    background = Layer("full", (5.5, 5.5), shift=(2.0, -1.0), **TEX)
    square = Layer("rect", (4.0, 6.0), (2.5, 2.5), shift=(-3.0, 2.0), **{**TEX, "base": 0.3})
    out = render([background, square], h, w)
    flow, occ, f1, f2 = out["flow"], out["occluded"], out["frame1"], out["frame2"]
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    in_square = (xs - 4).abs().le(2.5) & (ys - 6).abs().le(2.5)
    assert (flow[in_square] == torch.tensor([-3.0, 2.0], dtype=torch.float64)).all()
    assert (flow[~in_square] == torch.tensor([2.0, -1.0], dtype=torch.float64)).all()
    tx, ty = xs + flow[..., 0].long(), ys + flow[..., 1].long()
    outside = (tx < 0) | (tx >= w) | (ty < 0) | (ty >= h)
    moved_square = (tx - 1).abs().le(2.5) & (ty - 8).abs().le(2.5)  # where the square is in frame 2
    assert torch.equal(occ, outside | (moved_square & ~in_square))  # background behind the moved square
    visible = ~occ
    assert int(visible.sum()) > 60 and int((occ & ~outside).sum()) > 0
    assert torch.equal(f2[ty[visible], tx[visible]], f1[visible])  # exactly: the same texture, read at p


def test_rotation_and_scale_about_the_centre():
    layer = Layer("full", (3.0, 4.0), rotation=math.radians(30), scale=1.1, shift=(0.5, -0.25), **TEX)
    out = render([layer], 9, 9)
    assert out["flow"][4, 3].tolist() == pytest.approx([0.5, -0.25])  # the centre moves by the shift alone
    c, s = 1.1 * math.cos(math.radians(30)), 1.1 * math.sin(math.radians(30))
    dx, dy = 8 - 3.0, 0 - 4.0  # pixel (x=8, y=0), by hand: c + sR(p − c) + t − p
    want = [3 + c * dx - s * dy + 0.5 - 8, 4 + s * dx + c * dy - 0.25 - 0]
    assert out["flow"][0, 8].tolist() == pytest.approx(want)
    x, y = layer.forward_map(torch.tensor([1.7]), torch.tensor([-2.3]))  # the inverse map undoes it
    bx, by = layer.inverse_map(x, y)
    assert (float(bx), float(by)) == pytest.approx((1.7, -2.3))


def test_patches_are_the_three_by_three_neighbourhoods_of_both_frames():
    frames = torch.rand(2, 2, 5, 6, generator=torch.Generator().manual_seed(0))
    got = patches(frames)
    assert got.shape == (2, 30, 18)
    b, y, x = 1, 0, 3  # a top-edge pixel: its row above is replicated
    want = [float(frames[b, f, min(max(y + dy, 0), 4), min(max(x + dx, 0), 5)]) - 0.5
            for f in range(2) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    assert got[b, y * 6 + x].tolist() == pytest.approx(want)


def test_end_point_error_and_zero_flow_reference():
    task = create("task", "optical_flow", size=8, eval_size=6)
    batch = task.train_batch(0, 3, 0)
    pred = batch["target"] + torch.tensor([3.0, 4.0])  # every pixel off by a 3-4-5 triangle
    metrics = task.finalize(task.score(pred, batch))
    assert metrics["epe"] == pytest.approx(5.0) and metrics["epe_noc"] == pytest.approx(5.0)
    assert metrics["zero_flow_epe"] == pytest.approx(float(batch["target"].norm(dim=-1).mean()), rel=1e-6)
    assert float(task.loss(pred, batch)) == pytest.approx(5.0, rel=1e-6)
    assert 0 < task.references()["zero_flow"] < 6
    again = task.train_batch(0, 3, 0)
    assert torch.equal(again["input"], batch["input"]) and torch.equal(again["valid"], batch["valid"])


def test_the_standard_colour_wheel():
    flow = np.array([[[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.5, 0.0]]])
    got = flow_colours(flow, max_flow=1.0)[0].tolist()
    assert got[0] == [255, 255, 255]  # no motion: white
    assert got[1] == [255, 0, 0]  # rightward at full speed: red (the wheel's first colour)
    assert got[2] == [0, 209, 255]  # leftward: the wheel's 28th colour, CB ramp step 2: g = 255 − ⌊255·2/11⌋
    assert got[3] == [255, 127, 127]  # half speed: halfway to white


@pytest.mark.parametrize("arch", ["perceiver_io", "flow_cnn"])
def test_models_decode_one_flow_vector_per_pixel(arch):
    task = create("task", "optical_flow", size=6)
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, d_model=8, n_layers=1, position=ComponentSpec("fourier", {"n_bands": 2}),
                      options={"n_latents": 4} if arch == "perceiver_io" else {})
    model = build_model(cfg, task.info)
    batch = task.train_batch(0, 2, 0)
    out = model(batch["input"])
    assert out.shape == (2, 36, 2)
    task.loss(out, batch).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_trains_through_the_training_loop(tmp_path):
    result = train_two_steps_of(
        tmp_path / "run", "task.name=optical_flow", "task.size=6", "task.eval_size=2",
        "model.arch=perceiver_io", "model.position.name=fourier", "model.position.n_bands=2")
    assert result["metric"] in result["final"]
