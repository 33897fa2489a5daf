"""GPU checks, marked ``cuda`` (skipped without a CUDA device; ``make test-gpu`` runs them): every
mixer gives the CPU's numbers on the GPU (in float64 on the torch forms, in float32 through the Triton
kernels where they serve), each Triton kernel compiled for the device equals the float64 recurrence, a
model trains, resumes bitwise and generates there, the arena's quick preset runs end to end on it with
the CPU's FLOP counts, and mixed precision trains."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

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


@pytest.mark.parametrize("name", [n for n in names("mixer") if get("mixer", n).causal and not get("mixer", n).needs_2d])
def test_mixer_in_float32_on_gpu_is_near_float64(name):
    """float32 on the GPU (the Triton kernels where they serve) against float64 on the CPU, at a length past
    one chunk of 64 with a ragged end (120: the test options' log-linear levels cover 127); cuDNN's
    convolutions may use TF32, hence a tolerance of 1 % of the output's scale."""
    entry = get("mixer", name)
    torch.manual_seed(0)
    mixer = build("mixer", name, entry.test_options, d_model=64, causal=True, max_len=120).double()
    x = torch.randn(2, 120, 64, dtype=torch.float64)
    with torch.no_grad():
        ref = mixer(x)
        out = mixer.float().cuda()(x.float().cuda()).double().cpu()
    error = float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
    assert error < 1e-2, error


def _recurrence(vector: bool):
    from trevo.ops.linear_recurrence import linear_recurrence
    from trevo.ops.triton.linear_recurrence import chunk_linear_recurrence

    def inputs(g):
        q, k, v = (torch.randn(2, 3, 300, 64, generator=g, dtype=torch.float64) for _ in range(3))
        log_decay = F.logsigmoid(torch.randn(2, 3, 300, 64 if vector else 1, generator=g, dtype=torch.float64) + 3)
        return [q, k, v, log_decay, torch.randn(2, 3, 64, 64, generator=g, dtype=torch.float64)]

    def reference(q, k, v, log_decay, S0):
        return linear_recurrence(q, k, v, log_decay=log_decay if vector else log_decay[..., 0], initial_state=S0,
                                 form="recurrent")

    return inputs, lambda *xs: chunk_linear_recurrence(*xs, 64), reference


def _delta(gated: bool):
    from trevo.ops.delta_rule import delta_rule
    from trevo.ops.triton.delta_rule import chunk_delta_rule

    def inputs(g):
        q, v = (torch.randn(2, 3, 300, 64, generator=g, dtype=torch.float64) for _ in range(2))
        k = F.normalize(torch.randn(2, 3, 300, 64, generator=g, dtype=torch.float64), dim=-1)
        beta = torch.sigmoid(torch.randn(2, 3, 300, generator=g, dtype=torch.float64))
        log_decay = F.logsigmoid(torch.randn(2, 3, 300, generator=g, dtype=torch.float64) + 3)
        return [q, k, v, beta, log_decay, torch.randn(2, 3, 64, 64, generator=g, dtype=torch.float64)]

    def kernel(q, k, v, beta, log_decay, S0):
        return chunk_delta_rule(q, k, v, beta, log_decay if gated else None, S0, 64)

    def reference(q, k, v, beta, log_decay, S0):
        return delta_rule(q, k, v, beta, log_decay=log_decay if gated else None, initial_state=S0, form="recurrent")

    return inputs, kernel, reference


def _scan():
    from trevo.ops.selective_scan import selective_scan
    from trevo.ops.triton.selective_scan import chunk_selective_scan

    def inputs(g):
        x = torch.randn(2, 300, 96, generator=g, dtype=torch.float64)
        dt = F.softplus(torch.randn(2, 300, 96, generator=g, dtype=torch.float64) - 2)
        A = -torch.rand(96, 16, generator=g, dtype=torch.float64) - 0.1
        B, C = (torch.randn(2, 300, 16, generator=g, dtype=torch.float64) for _ in range(2))
        return [x, dt, A, B, C, torch.randn(2, 96, 16, generator=g, dtype=torch.float64)]

    return inputs, lambda *xs: chunk_selective_scan(*xs, 16), lambda *xs: selective_scan(*xs, form="recurrent")


TRITON_KERNELS = {"scalar_decay": lambda: _recurrence(False), "vector_decay": lambda: _recurrence(True),
                  "delta_rule": lambda: _delta(False), "gated_delta_rule": lambda: _delta(True),
                  "selective_scan": _scan}


@pytest.mark.parametrize("kernel", list(TRITON_KERNELS))
def test_triton_kernel_compiled_for_the_gpu_equals_float64(kernel):
    """The kernel compiled for the device (not the interpreter of tests/triton) in float32 against the
    torch recurrent form in float64 on the CPU, forward and every input's gradient, at 300 steps (four
    chunks, a ragged end) and the field's head size."""
    pytest.importorskip("triton")
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("TRITON_INTERPRET=1 (set by tests/triton's conftest when collected in the same run): "
                    "run this file alone, with TRITON_INTERPRET=0, as `make test-gpu` does")
    inputs, kernel, reference = TRITON_KERNELS[kernel]()
    exact = [x.requires_grad_() for x in inputs(torch.Generator().manual_seed(0))]
    single = [x.detach().float().cuda().requires_grad_() for x in exact]
    out, last = kernel(*single)
    out_ref, last_ref = reference(*exact)
    w_out, w_last = torch.randn_like(out_ref), torch.randn_like(last_ref)
    got = torch.autograd.grad((out * w_out.float().cuda()).sum() + (last * w_last.float().cuda()).sum(), single,
                              allow_unused=True)  # the ungated delta rule takes no decay
    want = torch.autograd.grad((out_ref * w_out).sum() + (last_ref * w_last).sum(), exact, allow_unused=True)
    assert [a is None for a in got] == [b is None for b in want]
    for what, a, b in [("output", out, out_ref), ("state", last, last_ref)] + [
            (f"gradient {i}", a, b) for i, (a, b) in enumerate(zip(got, want, strict=True)) if b is not None]:
        error = float((a.detach().double().cpu() - b.detach()).abs().max() / b.detach().abs().max())
        assert error < 1e-4, (what, error)


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


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("pair", ["scalar_decay", "vector_decay", "rwkv6", "delta_rule", "mamba"])
def test_bench_peers_agree_on_gpu(pair, dtype):
    """`trevo bench peers --device cuda`: trevo agrees with every peer there, fla's Triton kernels included."""
    from trevo.bench import peers

    names = peers.peer_names(pair, "cuda", dtype)
    if not names:
        pytest.skip(peers.INSTALL)
    for peer in names:
        for mode in ("fwd", "fwdbwd"):
            row = peers.measure_point({"pair": pair, "peer": peer, "mode": mode, "length": 200, "repeats": 1,
                                       "time_cap_s": 60.0, "device": "cuda", "dtype": dtype})
            assert row["status"] == "ok" or (mode == "fwdbwd" and "no_grad" in row["reason"]), row
