"""Helpers shared by several test files: tiny run configs, a tiny arena sweep, independent reference
loops for convolutions, the task checks every task module runs, fake CIFAR files.

A small seeded mixer is ``trevo.testing.build_mixer`` (the contract suite's); it is not repeated here.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from trevo.arena.sweep import Sweep, parse_sweep
from trevo.config import RunConfig
from trevo.registry import create
from trevo.train import train

# A byte-LM run that trains in a fraction of a second.
TINY = ["model.d_model=32", "model.n_layers=2", "task.seq_len=32", "train.batch_size=4", "train.steps=6",
        "train.eval_every=3", "train.checkpoint_every=3", "train.eval_batches=2", "train.warmup_steps=2"]

# Two training steps of one tiny layer: enough to show a task and a model run together.
TWO_STEPS = ["model.d_model=16", "model.n_layers=1", "train.batch_size=2", "train.steps=2", "train.eval_every=2",
             "train.checkpoint_every=2", "train.eval_batches=1", "train.warmup_steps=1"]


def tiny_cfg(*more: str) -> RunConfig:
    """``TINY`` with the overrides ``more`` on top."""
    return RunConfig().override([*TINY, *more])


def train_until_killed(cfg: RunConfig, out: Path, task_cls: type, kill_step: int, monkeypatch) -> None:
    """Run ``cfg`` into ``out`` until its task's ``train_batch`` for ``kill_step`` raises KeyboardInterrupt (a
    run killed mid-step, after the checkpoints before it), then give the task its ``train_batch`` back."""
    real = task_cls.train_batch

    def killed(self, step, batch_size, seed):
        if step == kill_step:
            raise KeyboardInterrupt
        return real(self, step, batch_size, seed)

    monkeypatch.setattr(task_cls, "train_batch", killed)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out, progress=False)
    monkeypatch.setattr(task_cls, "train_batch", real)


def sets(*items: str) -> list[str]:
    """``--set`` arguments of the CLI for each override."""
    return [arg for item in items for arg in ("--set", item)]


# ------------------------------------------------------------------------------------------------- arena

TINY_BASE = {
    "model": {"n_layers": 1, "d_model": 16},
    "task": {"name": "byte_lm", "seq_len": 16},
    "train": {"steps": 4, "batch_size": 2, "eval_every": 2, "eval_batches": 1, "checkpoint_every": 2,
              "warmup_steps": 1},
}


def tiny_sweep_spec(**extra) -> dict:
    return {"name": "tiny", "base": TINY_BASE, "variants": ["softmax_attention", "linear_attention"],
            "tasks": ["byte_lm"], "seeds": [0], "baseline": "softmax_attention", **extra}


def tiny_sweep(**extra) -> Sweep:
    """Two variants on a 16-token byte LM, one seed, four steps."""
    return parse_sweep(tiny_sweep_spec(**extra))


# ------------------------------------------------------------------------------------ reference loops

def causal_conv_loop(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """y[b, t, c] = Σ_{s<=t} k[c, t−s] u[b, s, c], one term at a time (``u`` [B, T, C], ``k`` [C, >=T])."""
    y = torch.zeros_like(u)
    for t in range(u.shape[1]):
        for s in range(t + 1):
            y[:, t] += k[:, t - s] * u[:, s]
    return y


def short_conv_loop(conv: nn.Conv1d, x: torch.Tensor, history: torch.Tensor | None = None) -> torch.Tensor:
    """A depthwise causal convolution written out: y_t = Σ_j w[c, j] x_{t−K+1+j} + b, where the inputs
    before the first come from ``history`` [B, K−1, C] (zeros if None). ``x`` [B, T, C]."""
    K = conv.weight.shape[-1]
    past = torch.zeros(x.shape[0], K - 1, x.shape[2], dtype=x.dtype) if history is None else history
    padded = torch.cat([past, x], dim=1)
    w = conv.weight[:, 0]  # [C, K]
    y = sum(w[:, j] * padded[:, j:j + x.shape[1]] for j in range(K))
    return y + conv.bias if conv.bias is not None else y


# ---------------------------------------------------------------------------------------------- tasks

def prefill_then_step(module: nn.Module, x: torch.Tensor, prefix: int) -> torch.Tensor:
    """The outputs for all of ``x`` from a prefill of its first ``prefix`` positions, then one ``step`` per
    remaining position, concatenated along the sequence: what a full forward pass must equal."""
    out, state = module.prefill(x[:, :prefix])
    outputs = [out]
    for t in range(prefix, x.shape[1]):
        y, state = module.step(x[:, t], state)
        outputs.append(y[:, None])
    return torch.cat(outputs, dim=1)


def same_batches(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def check_batches_are_a_function_of_seed_and_step(name: str, options: dict, prefix_stable: bool = True) -> None:
    """The same (step, batch size, seed) gives the same batch and another step another one; evaluation
    sets repeat across instances (generated sets are prefix-stable: a longer request starts with the
    shorter one) and val differs from test."""
    task = create("task", name, **options)
    assert same_batches(task.train_batch(3, 4, 7), task.train_batch(3, 4, 7))
    assert not same_batches(task.train_batch(3, 4, 7), task.train_batch(4, 4, 7))
    first = next(task.eval_batches("val", 4, 1))
    more = 2 if prefix_stable else 1
    assert same_batches(first, next(create("task", name, **options).eval_batches("val", 4, more)))
    assert not same_batches(first, next(task.eval_batches("test", 4, 1)))


def train_two_steps(out: Path, task: dict, causal: str) -> dict:
    """Train ``TWO_STEPS`` on the task ``{"name": ..., **options}`` with ``model.causal``; the result
    after checking that the final metric is finite and two losses were recorded."""
    cfg = RunConfig().override(TWO_STEPS).replace({"model.causal": causal, "task": task})
    result = train(cfg, out, progress=False)
    assert math.isfinite(result["final"][result["metric"]]) and len(result["losses"]) == 2
    return result


def train_two_steps_of(out: Path, *overrides: str) -> dict:
    """Train ``TWO_STEPS`` with the dotted ``overrides`` (a task and a model that fits it) through the real
    training loop; the result after checking that its final metric is finite."""
    result = train(RunConfig().override([*TWO_STEPS, *overrides]), out, progress=False)
    assert math.isfinite(result["final"][result["metric"]]) and len(result["losses"]) == 2
    return result


CIFAR_FILES = [*(f"data_batch_{k}.bin" for k in range(1, 6)), "test_batch.bin"]


def write_cifar_binaries(directory: Path, n: int = 4) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """CIFAR-10's binary layout (a label byte, then 3072 pixel bytes: R, G, B planes) with ``n`` random
    records per file; returns (labels, pixels) of each file."""
    records = {}
    for i, name in enumerate(CIFAR_FILES):
        rng = np.random.default_rng(i)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        np.concatenate([labels[:, None], pixels], axis=1).tofile(directory / name)
        records[name] = (labels, pixels)
    return records
