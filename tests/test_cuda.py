"""GPU checks, run where CUDA is present (skipped elsewhere): every mixer gives the CPU's numbers on
the GPU, and a model trains and generates there."""

from __future__ import annotations

import pytest
import torch

from trevo.registry import build, get, names

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _cases():
    for name in names("mixer"):
        e = get("mixer", name)
        for causal in (True, False):
            if e.causal if causal else e.bidirectional:
                yield pytest.param(name, causal, id=f"{name}-{'causal' if causal else 'bidir'}")


@pytest.mark.parametrize("name,causal", list(_cases()))
def test_mixer_on_gpu_matches_cpu(name, causal):
    entry = get("mixer", name)
    n = 16 if entry.needs_2d else 64
    layout = (4, 4) if entry.needs_2d else (n,)
    torch.manual_seed(0)
    mixer = build("mixer", name, entry.test_options, d_model=32, causal=causal, max_len=n, layout=layout).double()
    x = torch.randn(2, n, 32, dtype=torch.float64)
    ref = mixer(x, layout=layout)
    gpu = mixer.cuda()
    out = gpu(x.cuda(), layout=layout)
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-7, atol=1e-8)
    if causal:
        y0, state = gpu.prefill(x[:, : n // 2].cuda())
        y1, _ = gpu.prefill(x[:, n // 2:].cuda(), state)
        torch.testing.assert_close(torch.cat([y0, y1], 1).cpu(), ref, rtol=1e-7, atol=1e-8)


def test_training_and_generation_on_gpu(tmp_path):
    from trevo.config import RunConfig
    from trevo.generate import generate
    from trevo.train import build as build_run
    from trevo.train import train

    cfg = RunConfig().override(["model.d_model=64", "model.n_layers=2", "task.seq_len=64", "train.steps=20",
                                "train.eval_every=10", "train.device=cuda", "model.mixer.name=rwkv4"])
    result = train(cfg, tmp_path, progress=False)
    assert result["final"]["bpb"] < 8
    _, model = build_run(cfg.override(["train.dtype=float64"]))
    a, _ = generate(model, b"import ", 16, mode="parallel")
    b, _ = generate(model, b"import ", 16, mode="recurrent")
    assert a == b
