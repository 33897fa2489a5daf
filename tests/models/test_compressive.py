"""Compressive Transformer: old memories are compressed at rate c into a FIFO, and the
attention-reconstruction loss trains the compression function alone."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tests.helpers import tiny_cfg
from trevo.models.compressive import Compressor
from trevo.segments import init_memory, run_stream
from trevo.train import auxiliary_loss, build

T = 8
STREAM = ["task.name=passkey", f"task.seq_len={T}", "task.segments=3", "task.distance=2", "task.n_key=2",
          "model.d_model=16", "model.n_layers=1", "model.arch=compressive_transformer"]


def test_mean_and_max_compression_hand_checked():
    old = torch.tensor([[1.0, 2.0, 3.0, 7.0]])[..., None]  # [B=1, L=4, d=1]
    assert Compressor(1, 2, "mean")(old)[0, :, 0].tolist() == [1.5, 5.0]
    assert Compressor(1, 2, "max")(old)[0, :, 0].tolist() == [2.0, 7.0]
    assert Compressor(1, 2, "conv")(old).shape == (1, 2, 1)


def test_memory_and_compressed_memory_after_three_segments():
    task, model = build(tiny_cfg(*STREAM, "model.options.compression=mean", "model.options.compressed_len=8"))
    model.eval()
    batch = task.train_batch(0, 2, 0)
    with torch.no_grad():
        _, memory = run_stream(model, batch, T, 0, 3, init_memory(model, 2, "cpu", torch.float32))
        embedded = [model._embed(batch["input"][:, s * T:(s + 1) * T]) for s in range(3)]  # layer 0's inputs
    torch.testing.assert_close(memory["0.x"], embedded[2])  # n_m = T: the last segment
    pooled = [F.avg_pool1d(e.transpose(1, 2), 2).transpose(1, 2) for e in embedded[:2]]
    torch.testing.assert_close(memory["0.compressed"], torch.cat(pooled, 1))  # 2 × T/2 compressed, FIFO of 8


def test_reconstruction_loss_trains_the_compressor_alone():
    task, model = build(tiny_cfg(*STREAM))
    batch = task.train_batch(0, 2, 0)
    memory = init_memory(model, 2, "cpu", torch.float32)
    run_stream(model, batch, T, 0, 2, memory)  # segment 1 pushes segment 0 out of the memory
    loss = auxiliary_loss(model)
    assert loss is not None and loss > 0
    loss.backward()
    grads = {k: p.grad for k, p in model.named_parameters()}
    assert grads["compressors.0.conv.weight"].abs().sum() > 0
    assert all(g is None for k, g in grads.items() if not k.startswith("compressors."))
    assert auxiliary_loss(model) == 0  # taken once per step
