"""Block-Recurrent Transformer: the LSTM gate is the paper's formula, a closed gate holds the state
across any number of blocks, and the state after N blocks is the gated recurrence stepped by hand."""

from __future__ import annotations

import torch

from tests.helpers import tiny_cfg
from trevo.models.block_recurrent import LSTMGate
from trevo.segments import init_memory, run_stream
from trevo.train import build

T = 8
STREAM = ["task.name=passkey", f"task.seq_len={T}", "task.segments=3", "task.distance=2", "task.n_key=2",
          "model.d_model=16", "model.arch=block_recurrent_transformer", "model.options.n_slots=3"]


def test_lstm_gate_is_the_papers_formula():
    gate = LSTMGate(4).double()
    c, z = torch.randn(2, 3, 4, dtype=torch.float64), torch.randn(2, 3, 4, dtype=torch.float64)
    w, b = gate.proj.weight, gate.proj.bias
    pre = [z @ w[k * 4:(k + 1) * 4].T + b[k * 4:(k + 1) * 4] for k in range(3)]  # W_z, W_i, W_f
    expected = c * torch.sigmoid(pre[2] + 1) + torch.tanh(pre[0]) * torch.sigmoid(pre[1] - 1)
    torch.testing.assert_close(gate(c, z), expected)


def test_a_closed_gate_holds_the_state_across_blocks():
    task, model = build(tiny_cfg(*STREAM))
    (layer,) = model.with_memory
    cell = model.states[str(layer)]
    with torch.no_grad():
        for gate in (cell.attention_gate, cell.channel_gate):
            gate.proj.bias[32:] = 1e4  # f = 1 (forget nothing) …
            gate.proj.bias[16:32] = -1e4  # … i = 0 (write nothing)
    batch = task.train_batch(0, 2, 0)
    _, memory = run_stream(model, batch, T, 0, 3, init_memory(model, 2, "cpu", torch.float32))
    torch.testing.assert_close(memory[f"{layer}.h"], cell.initial[None].expand(2, -1, -1))


def test_state_after_n_blocks_is_the_recurrence_stepped_by_hand():
    task, model = build(tiny_cfg(*STREAM, "model.n_layers=1"))
    model = model.double().eval()
    cell = model.states["0"]
    batch = task.train_batch(0, 2, 0)
    _, memory = run_stream(model, batch, T, 0, 3, init_memory(model, 2, "cpu", torch.float64))
    state = cell.initial[None].expand(2, -1, -1)
    for s in range(3):  # one layer: its input is the segment's embedding
        h = model.blocks[0].norm1(model._embed(batch["input"][:, s * T:(s + 1) * T]))
        state = cell.update(h, state)
    torch.testing.assert_close(memory["0.h"], state)
