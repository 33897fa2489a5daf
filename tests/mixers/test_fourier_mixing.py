"""FNet equals Re(FFT_seq(FFT_hidden(x))); GFNet's FFT filtering equals the circular convolution it
defines (1-D and 2-D); both are bidirectional only, and the 2-D filter refuses a 1-D layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trevo.config import RunConfig
from trevo.errors import IncompatibleError, TrevoError
from trevo.registry import create
from trevo.train import build


def test_fnet_equals_the_real_part_of_the_2d_dft():
    x = torch.randn(2, 7, 6, dtype=torch.float64)
    mixer = create("mixer", "fnet", d_model=6, causal=False)
    expected = np.fft.fft(np.fft.fft(x.numpy(), axis=-1), axis=-2).real
    np.testing.assert_allclose(mixer(x).numpy(), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("t", [9, 6])
def test_gfnet_equals_its_circular_convolution(t):
    torch.manual_seed(0)
    n, d = 9, 3
    mixer = create("mixer", "gfnet", d_model=d, causal=False, max_len=n).double()
    x = torch.randn(2, t, d, dtype=torch.float64)
    k = np.fft.irfft(torch.view_as_complex(mixer.filter.detach()).numpy(), n=n, axis=0)  # [n, d]
    xp = np.zeros((2, n, d))
    xp[:, :t] = x.numpy()  # shorter inputs are zero-padded to max_len
    y = np.zeros_like(xp)
    for i in range(n):
        for s in range(n):
            y[:, i] += k[s] * xp[:, (i - s) % n]
    np.testing.assert_allclose(mixer(x).detach().numpy(), y[:, :t], rtol=1e-9, atol=1e-12)


def test_gfnet_2d_equals_its_circular_convolution():
    torch.manual_seed(0)
    h, w, d = 3, 4, 2
    mixer = create("mixer", "gfnet_2d", d_model=d, causal=False, layout=(h, w)).double()
    x = torch.randn(1, h * w, d, dtype=torch.float64)
    k = np.fft.irfft2(torch.view_as_complex(mixer.filter.detach()).numpy(), s=(h, w), axes=(0, 1))
    img = x.numpy().reshape(1, h, w, d)
    y = np.zeros_like(img)
    for i in range(h):
        for j in range(w):
            for a in range(h):
                for b in range(w):
                    y[:, i, j] += k[a, b] * img[:, (i - a) % h, (j - b) % w]
    np.testing.assert_allclose(mixer(x, layout=(h, w)).detach().numpy(), y.reshape(1, h * w, d), rtol=1e-9,
                               atol=1e-12)


def test_gfnet_2d_refuses_a_1d_layout():
    mixer = create("mixer", "gfnet_2d", d_model=4, causal=False, layout=(4, 4))
    with pytest.raises(TrevoError, match="2-D layout"):
        mixer(torch.randn(1, 16, 4), layout=(16,))
    with pytest.raises(TrevoError, match="2-D layout"):
        mixer(torch.randn(1, 16, 4))


@pytest.mark.parametrize("name", ["fnet", "gfnet", "gfnet_2d"])
def test_causal_use_is_refused(name):
    with pytest.raises(IncompatibleError, match="bidirectional only"):
        create("mixer", name, d_model=4, causal=True, **({"layout": (2, 2)} if name == "gfnet_2d" else {}))
    cfg = RunConfig().override(["model.d_model=16", "model.n_layers=1", "task.seq_len=16", "model.max_len=16",
                                f"model.mixer.name={name}"])
    with pytest.raises(IncompatibleError, match="bidirectional only"):
        build(cfg)


@pytest.mark.parametrize("name", ["fnet", "gfnet"])
def test_padded_positions_are_zeroed_before_mixing(name):
    torch.manual_seed(0)
    mixer = create("mixer", name, d_model=4, causal=False, **({"max_len": 10} if name == "gfnet" else {}))
    x = torch.randn(2, 10, 4, dtype=torch.float64)
    mixer = mixer.double()
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[:, 7:] = False
    x2 = x.clone()
    x2[:, 7:] = 100.0
    torch.testing.assert_close(mixer(x, padding_mask=mask), mixer(x2, padding_mask=mask))
    x3 = x.clone()
    x3[:, 7:] = 0.0
    torch.testing.assert_close(mixer(x, padding_mask=mask), mixer(x3))
