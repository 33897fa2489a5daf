"""GPU checks, marked ``cuda`` (skipped without a CUDA device; ``make test-gpu`` runs them): every
mixer gives the CPU's numbers on the GPU, a model trains, resumes bitwise and generates there, the
arena's quick preset runs end to end on it with the CPU's FLOP counts, and mixed precision trains."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import train_until_killed
from trevo.registry import build, get, names

pytestmark = pytest.mark.cuda


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
    assert result["versions"]["device_name"] == torch.cuda.get_device_name(0)
    _, model = build_run(cfg.override(["train.dtype=float64"]))
    a, _ = generate(model, b"import ", 16, mode="parallel")
    b, _ = generate(model, b"import ", 16, mode="recurrent")
    assert a == b
    # sampling draws from a generator on the GPU: the same seed gives the same text
    c, _ = generate(model, b"import ", 16, temperature=1.0, seed=3)
    d, _ = generate(model, b"import ", 16, temperature=1.0, seed=3)
    assert c == d


@pytest.mark.parametrize("mixer", ["softmax_attention", "rwkv4"])
def test_killed_run_resumes_bitwise_on_gpu(tmp_path, tiny_cfg, mixer, monkeypatch):
    from trevo.checkpoint import CHECKPOINT, read_checkpoint
    from trevo.tasks.byte_lm import ByteLM
    from trevo.train import train

    cfg = tiny_cfg(f"model.mixer.name={mixer}", "model.dropout=0.1", "train.device=cuda")
    straight = train(cfg, tmp_path / "a", progress=False)
    train_until_killed(cfg, tmp_path / "b", ByteLM, 4, monkeypatch)
    torch.cuda.manual_seed_all(12345)  # a resumed process starts from other CUDA random states
    resumed = train(cfg, tmp_path / "b", resume=True, progress=False)
    assert resumed["losses"] == straight["losses"]
    tensors, _ = read_checkpoint(tmp_path / "b" / CHECKPOINT)
    assert "rng.cuda.0" in tensors  # dropout on the GPU draws from cuda:0's generator


def test_quick_arena_on_gpu_counts_the_cpu_flops(tmp_path):
    from trevo.arena.runner import _flops_per_token, run_sweep
    from trevo.arena.sweep import load_sweep
    from trevo.config import RunConfig

    sweep = load_sweep("quick")
    sweep.base = sweep.base.override(["train.device=cuda"])
    store, _ = run_sweep(sweep, tmp_path, workers=1, log=lambda _: None)
    runs = store.runs(sweep.name)
    assert len(runs) == 32 and all(r.status == "done" for r in runs), [(r.label, r.error) for r in runs]
    for r in runs[::8]:
        cpu = _flops_per_token(RunConfig.from_dict(r.config).override(["train.device=cpu"]))
        assert r.flops_per_token == pytest.approx(cpu, rel=1e-9), r.label


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_on_gpu(tmp_path, tiny_cfg, precision):
    from trevo.train import train

    fp32 = train(tiny_cfg("train.device=cuda", "train.steps=30"), tmp_path / "fp32", progress=False)
    mixed = train(tiny_cfg("train.device=cuda", "train.steps=30", f"train.precision={precision}"), tmp_path / "mixed",
                  progress=False)
    assert max(abs(a - b) for a, b in zip(fp32["losses"], mixed["losses"], strict=True)) < 0.1
