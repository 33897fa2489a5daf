"""The state-space time step Δ (trevo.components.timestep): log Δ uniform in [log dt_min, log dt_max],
softplus(dt_bias_init) is that Δ, and inverse_softplus inverts softplus."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trevo.components.timestep import dt_bias_init, inverse_softplus, log_dt_init


def test_softplus_of_the_bias_is_log_uniform_in_range():
    torch.manual_seed(0)
    lo, hi = 2e-3, 5e-2
    dt = F.softplus(dt_bias_init(20_000, lo, hi).double())
    assert dt.min() >= lo * (1 - 1e-5) and dt.max() <= hi * (1 + 1e-5)
    u = (dt.log() - math.log(lo)) / (math.log(hi) - math.log(lo))  # uniform on [0, 1] if log-uniform
    assert float(u.mean()) == pytest.approx(0.5, abs=0.01)
    assert float(u.var()) == pytest.approx(1 / 12, abs=0.005)
    assert float((u < 0.25).double().mean()) == pytest.approx(0.25, abs=0.015)


def test_log_dt_spans_the_range_and_inverse_softplus_inverts():
    torch.manual_seed(0)
    log_dt = log_dt_init(5000, 1e-3, 1e-1)
    assert log_dt.min() >= math.log(1e-3) and log_dt.max() <= math.log(1e-1)
    assert log_dt.min() < math.log(1.1e-3) and log_dt.max() > math.log(0.09)
    x = torch.tensor([1e-4, 0.01, 1.0, 30.0], dtype=torch.float64)
    torch.testing.assert_close(F.softplus(inverse_softplus(x)), x, rtol=1e-12, atol=0)
