"""Continuous-kernel convolutions: CKConv equals a loop convolving with its kernel net sampled at
every lag; FlexConv's receptive field is exactly its learned, cropped kernel size and grows with σ;
the CCNN's 2-D convolution (FFT and direct) equals a brute-force sum over the image, ignores padding
and builds on digits' 2-D layout."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trevo.config import ComponentSpec, ModelConfig
from trevo.errors import IncompatibleError
from trevo.models import build_model
from trevo.ops.ckconv import MASK_THRESHOLD, conv2d_direct, conv2d_fft, cropped_extent
from trevo.tasks.base import TaskInfo
from trevo.testing import build_mixer


def test_ckconv_equals_a_loop_over_lags_of_its_kernel_net():
    mixer = build_mixer("ckconv", True, form="fft")
    x = torch.randn(2, 11, mixer.d_model, dtype=torch.float64)
    lags = torch.arange(11, dtype=torch.float64)[:, None] / mixer.max_len
    k = mixer.kernel_net(lags)  # [lag, channel]
    conv = torch.stack([sum(k[t - s] * x[:, s] for s in range(t + 1)) for t in range(11)], 1)
    expected = mixer.point_proj(F.gelu(conv + mixer.bias))
    torch.testing.assert_close(mixer(x), expected, rtol=1e-10, atol=1e-12)


def test_bidirectional_ckconv_uses_negative_lags():
    mixer = build_mixer("ckconv", False, form="quadratic")
    x = torch.randn(1, 7, mixer.d_model, dtype=torch.float64)
    lags = torch.arange(-6, 7, dtype=torch.float64)[:, None] / mixer.max_len
    k = mixer.kernel_net(lags)  # row j is lag j − 6
    conv = torch.stack([sum(k[t - s + 6] * x[:, s] for s in range(7)) for t in range(7)], 1)
    torch.testing.assert_close(mixer(x), mixer.point_proj(F.gelu(conv + mixer.bias)), rtol=1e-10, atol=1e-12)


def test_flexconv_sees_exactly_its_cropped_kernel_and_the_size_follows_sigma():
    mixer = build_mixer("flexconv", True, init_size=0.3)
    K = mixer.extent(mixer.max_len, 0, mixer.max_len)
    sigma = math.exp(mixer.log_sigma.item())
    assert math.exp(-0.5 * ((K - 1) / mixer.max_len / sigma) ** 2) >= MASK_THRESHOLD  # the last kept lag
    assert math.exp(-0.5 * (K / mixer.max_len / sigma) ** 2) < MASK_THRESHOLD  # the first dropped one
    x = torch.randn(1, mixer.max_len, mixer.d_model, dtype=torch.float64)
    t = mixer.max_len - 1
    y = mixer(x)[0, t]
    outside, inside = x.clone(), x.clone()
    outside[0, t - K] += 5.0
    inside[0, t - K + 1] += 5.0
    assert torch.equal(mixer(outside)[0, t], y)
    assert not torch.allclose(mixer(inside)[0, t], y)
    with torch.no_grad():
        mixer.log_sigma += 0.5
    assert mixer.extent(mixer.max_len, 0, mixer.max_len) > K
    assert cropped_extent(1e-6, 100, 100) == 1 and cropped_extent(10.0, 100, 100) == 100


def test_2d_convolution_forms_equal_the_brute_force_sum():
    torch.manual_seed(0)
    u = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    k = torch.randn(3, 7, 5, dtype=torch.float64)  # offsets −3…3 by −2…2
    expected = torch.zeros_like(u)
    for i in range(5):
        for j in range(4):
            for a in range(5):
                for b in range(4):
                    di, dj = i - a, j - b
                    if abs(di) <= 3 and abs(dj) <= 2:
                        expected[:, :, i, j] += k[:, di + 3, dj + 2] * u[:, :, a, b]
    torch.testing.assert_close(conv2d_direct(u, k), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(conv2d_fft(u, k), expected, rtol=1e-10, atol=1e-12)


def test_ccnn_on_an_image_layout_convolves_in_2d_and_ignores_padding():
    mixer = build_mixer("ccnn", False)
    x = torch.randn(2, 16, mixer.d_model, dtype=torch.float64)
    ys = {}
    for form in ("fft", "quadratic"):
        mixer.form = form
        ys[form] = mixer(x, layout=(4, 4))
    torch.testing.assert_close(ys["fft"], ys["quadratic"], rtol=1e-10, atol=1e-12)
    assert not torch.allclose(ys["fft"], mixer(x, layout=(16,)))  # the 2-D filter is not the 1-D one
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[1, 12:] = False
    x2 = x.clone()
    x2[1, 12:] = 9.0
    torch.testing.assert_close(mixer(x, padding_mask=mask, layout=(4, 4))[1, :12],
                               mixer(x2, padding_mask=mask, layout=(4, 4))[1, :12], rtol=1e-12, atol=1e-12)


def test_ccnn_builds_and_runs_on_a_pixel_grid():
    info = TaskInfo(vocab_size=17, head="classify", seq_len=64, n_classes=10, layout=(8, 8))
    model = build_model(ModelConfig(d_model=16, n_layers=1, causal="false",
                                    mixer=ComponentSpec("ccnn", {"filter_hidden": 8})), info)
    assert model(torch.randint(0, 17, (2, 64))).shape == (2, 10)


def test_flexconv_refuses_an_initial_size_outside_the_unit_interval():
    with pytest.raises(IncompatibleError, match="init_size"):
        build_mixer("flexconv", True, init_size=0.0)


def test_generation_state_is_the_cropped_history_for_flexconv_and_everything_for_ckconv():
    flex = build_mixer("flexconv", True, init_size=0.05)  # max_len 19: a one-lag kernel keeps no input
    K = flex.extent(flex.max_len, 0, flex.max_len)
    x = torch.randn(2, 7, flex.d_model, dtype=torch.float64)
    _, state = flex.prefill(x)
    assert state["conv"].shape[1] == K - 1
    ck = build_mixer("ckconv", True)
    _, state = ck.prefill(x)
    _, state = ck.prefill(x, state)
    assert state["conv"].shape[1] == 14
