"""The Perceiver's continuous-input adapter: x_m = [W f_m ; fourier(f_m[:c]) ; pos(m)], checked by hand."""

from __future__ import annotations

import pytest
import torch

from trevo.components.fourier_positions import fourier_bands
from trevo.config import ComponentSpec
from trevo.errors import TrevoError
from trevo.models.perceiver_features import FeatureAdapter


def test_embedding_then_fourier_features_of_the_coordinates_then_the_index_position():
    torch.manual_seed(0)
    adapter = FeatureAdapter(4, 5, ComponentSpec("learned"), coordinate_dims=2, coordinate_bands=3,
                             coordinate_resolution=8.0, unordered=False, mode="concat", pos_dim=6, max_len=7,
                             layout=(7,)).double()
    f = torch.rand(2, 7, 4, dtype=torch.float64) * 2 - 1
    x = adapter(f, torch.float64)
    assert adapter.width == 5 + 2 * (2 * 3 + 1) + 6 == x.shape[-1]
    torch.testing.assert_close(x[..., :5], adapter.embed(f))
    bands = fourier_bands(3, 8.0)  # 1 … μ/2, as in the Perceiver: [x, sin(π f x), cos(π f x)] per axis
    b, m, axis = 1, 4, 1
    c = float(f[b, m, axis])
    want = [c, *torch.sin(torch.pi * bands * c).tolist(), *torch.cos(torch.pi * bands * c).tolist()]
    assert x[b, m, 5 + 7:5 + 14].tolist() == pytest.approx(want)
    pos = x[..., 5 + 14:]
    torch.testing.assert_close(pos[0], pos[1])  # the index position is the same for every example …
    assert (pos[0, 0] - pos[0, 1]).abs().max() > 0  # … and differs between indices


def test_bad_features_get_one_clear_error():
    adapter = FeatureAdapter(3, 4, ComponentSpec("none"), coordinate_dims=3, coordinate_bands=2,
                             coordinate_resolution=4.0, unordered=True, mode="concat", pos_dim=4, max_len=5,
                             layout=(5,))
    with pytest.raises(TrevoError, match=r"\[batch, elements, 3\]"):
        adapter.check(torch.zeros(2, 5, 4))
    with pytest.raises(TrevoError, match="coordinate_dims=4"):
        FeatureAdapter(3, 4, ComponentSpec("none"), coordinate_dims=4, coordinate_bands=2, coordinate_resolution=4.0,
                       unordered=True, mode="concat", pos_dim=4, max_len=5, layout=(5,))
