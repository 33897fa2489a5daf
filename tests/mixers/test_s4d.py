"""S4D: the kernel by FFT equals the recurrence, stepping equals the full forward, the bidirectional forms
equal the two-kernel formula, and the bidirectional layer trains on a 2-D pixel task."""

from __future__ import annotations

import pytest
import torch

from trevo.components.mixers.s4d import S4D
from trevo.config import ComponentSpec, ModelConfig
from trevo.models import build_model
from trevo.ops.long_conv import bidirectional_conv_quadratic, fft_causal_conv
from trevo.ops.ssm import ssm_kernel
from trevo.tasks.base import TaskInfo, cross_entropy
from trevo.train import make_optimizer


def _ssm_loop(dtA, Bbar, C, u):
    """y_t = 2·Re(C x_t), x_t = Λ̄ x_{t−1} + B̄ u_t per channel ([H, N] parameters, u [B, T, H])."""
    x = torch.zeros(u.shape[0], *dtA.shape, dtype=torch.complex128)
    ys = []
    for t in range(u.shape[1]):
        x = torch.exp(dtA) * x + Bbar * u[:, t, :, None]
        ys.append(2 * (x * C).sum(-1).real)
    return torch.stack(ys, 1)


def test_s4d_kernel_by_fft_equals_the_recurrent_scan():
    torch.manual_seed(0)
    mixer = S4D(3, causal=True, d_state=4, init="lin").double()
    dtA, Bbar = mixer.discretize()
    u = torch.randn(2, 21, 3, dtype=torch.float64)
    kernel = ssm_kernel(dtA, mixer.C() * Bbar, 21)
    by_fft = fft_causal_conv(u.transpose(1, 2), kernel).transpose(1, 2)
    torch.testing.assert_close(by_fft, _ssm_loop(dtA, Bbar, mixer.C(), u), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("init", ["legs", "lin"])
def test_s4d_stepping_gives_the_same_outputs(init):
    torch.manual_seed(0)
    mixer = S4D(4, causal=True, d_state=4, init=init, fft_chunk_size=4).double()
    x = torch.randn(2, 13, 4, dtype=torch.float64)
    full = mixer(x)
    state, ys = mixer.init_state(2, "cpu", torch.float64), []
    for t in range(13):
        y, state = mixer.step(x[:, t], state)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), full, rtol=1e-10, atol=1e-12)


def test_s4d_bidirectional_forms_agree_with_the_two_kernel_formula():
    torch.manual_seed(0)
    mixer = S4D(3, causal=False, d_state=4).double()
    x = torch.randn(2, 10, 3, dtype=torch.float64)
    dtA, Bbar = mixer.discretize()
    kf, kb = ssm_kernel(dtA, mixer.C(0) * Bbar, 10), ssm_kernel(dtA, mixer.C(1) * Bbar, 10)
    conv = bidirectional_conv_quadratic(x.transpose(1, 2), kf, kb).transpose(1, 2)
    expected = mixer._output(conv, x)
    for form in ("fft", "chunk", "recurrent"):
        mixer.form = form
        torch.testing.assert_close(mixer(x), expected, rtol=1e-10, atol=1e-12)


def test_bidirectional_s4d_trains_one_step_on_pixels(tiny_cfg):
    """The contract suite trains S4D causally on the byte LM; here its bidirectional form, inside a
    2-layer model on a pixel-classification stand-in with an (8, 8) layout."""
    info = TaskInfo(vocab_size=17, head="classify", seq_len=64, n_classes=10, layout=(8, 8))
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=32, n_layers=2, causal="false", mixer=ComponentSpec("s4d")), info)
    batch = {"input": torch.randint(0, 17, (8, 64)), "target": torch.randint(0, 10, (8,))}
    optimizer = make_optimizer(model, tiny_cfg("train.lr=1e-2").train)
    before = [p.detach().clone() for p in model.parameters()]
    loss = cross_entropy(model(batch["input"]), batch)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    moved = sum(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True)) / len(before)
    with torch.no_grad():
        after = cross_entropy(model(batch["input"]), batch)
    assert torch.isfinite(loss) and torch.isfinite(after) and after < loss and moved > 0.9
