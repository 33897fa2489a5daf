"""The Triton chunk kernels of the (gated) delta rule, forward and backward, equal the torch recurrent
form of trevo.ops.delta_rule in float64, run through Triton's interpreter on CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")

from trevo.ops.delta_rule import delta_rule  # noqa: E402
from trevo.ops.triton.delta_rule import chunk_delta_rule  # noqa: E402


@pytest.mark.parametrize("gated", [False, True], ids=["deltanet", "gated"])
@pytest.mark.parametrize("T,DK,DV,chunk", [(37, 16, 16, 16), (16, 20, 12, 16), (40, 16, 16, 32)])
def test_kernels_equal_the_recurrent_delta_rule_forward_and_backward(gated, T, DK, DV, chunk):
    g = torch.Generator().manual_seed(T + DK)
    q = torch.randn(2, 2, T, DK, generator=g, dtype=torch.float64)
    k = F.normalize(torch.randn(2, 2, T, DK, generator=g, dtype=torch.float64), dim=-1)
    v = torch.randn(2, 2, T, DV, generator=g, dtype=torch.float64)
    beta = torch.sigmoid(torch.randn(2, 2, T, generator=g, dtype=torch.float64))
    log_decay = F.logsigmoid(torch.randn(2, 2, T, generator=g, dtype=torch.float64) + 2)
    S0 = torch.randn(2, 2, DK, DV, generator=g, dtype=torch.float64)
    exact = [x.requires_grad_() for x in (q, k, v, beta, log_decay, S0)]
    single = [x.detach().float().requires_grad_() for x in exact]

    def run(xs, fn):
        return fn(xs[0], xs[1], xs[2], xs[3], xs[4] if gated else None, xs[5])

    o, S = run(single, lambda *a: chunk_delta_rule(*a, chunk))
    o_ref, S_ref = run(exact, lambda q, k, v, b, ld, s0: delta_rule(q, k, v, b, log_decay=ld, initial_state=s0,
                                                                    form="recurrent"))
    torch.testing.assert_close(o.double(), o_ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(S.double(), S_ref, rtol=1e-5, atol=1e-4)
    wo, wS = torch.randn_like(o_ref), torch.randn_like(S_ref)
    inputs = [0, 1, 2, 3, 4, 5] if gated else [0, 1, 2, 3, 5]
    got = torch.autograd.grad((o * wo.float()).sum() + (S * wS.float()).sum(), [single[i] for i in inputs])
    want = torch.autograd.grad((o_ref * wo).sum() + (S_ref * wS).sum(), [exact[i] for i in inputs])
    names = ["q", "k", "v", "beta", "log_decay", "initial_state"]
    for i, a, b in zip(inputs, got, want, strict=True):
        error = float((a.double() - b).abs().max() / b.abs().max())
        assert error < 1e-5, (names[i], error)


def test_delta_rule_dispatches_its_chunk_form_to_the_kernels(monkeypatch):
    import trevo.ops.triton.delta_rule as kernels
    from trevo.ops import triton as triton_kernels

    calls = []
    real = kernels.chunk_delta_rule
    monkeypatch.setattr(kernels, "chunk_delta_rule", lambda *args: calls.append(args[-1]) or real(*args))
    g = torch.Generator().manual_seed(0)
    q, v = torch.randn(1, 2, 20, 16, generator=g), torch.randn(1, 2, 20, 16, generator=g)
    k = F.normalize(torch.randn(1, 2, 20, 16, generator=g), dim=-1)
    beta = torch.sigmoid(torch.randn(1, 2, 20, generator=g))
    log_decay = F.logsigmoid(torch.randn(1, 2, 20, generator=g) + 2)
    mask = torch.ones(1, 20, dtype=torch.bool)
    mask[:, 15:] = False
    kwargs = dict(log_decay=log_decay, padding_mask=mask, scale=0.5, form="chunk", chunk_size=16)
    monkeypatch.setattr(triton_kernels, "enabled", lambda *tensors: True)
    o, S = delta_rule(q, k, v, beta, **kwargs)
    assert calls == [16]
    monkeypatch.setattr(triton_kernels, "enabled", lambda *tensors: False)
    o_torch, S_torch = delta_rule(q, k, v, beta, **kwargs)
    torch.testing.assert_close(o, o_torch, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(S, S_torch, rtol=1e-5, atol=1e-5)
    # a vector decay (KDA), an erase key (Gated DeltaNet-2, Comba) and chunk sizes the kernels cannot take stay
    # on the torch form
    monkeypatch.setattr(triton_kernels, "enabled", lambda *tensors: True)
    delta_rule(q, k, v, beta, log_decay=log_decay[..., None].expand(-1, -1, -1, 16), form="chunk", chunk_size=16)
    delta_rule(q, k, v, beta, erase_key=k * 0.5, form="chunk", chunk_size=16)
    delta_rule(q, k, v, beta, form="chunk", chunk_size=24)
    assert calls == [16]
