"""The token-mixer base class: state sizes, form validation, the form for a length (``auto``: the form
measured fastest in trevo.bench.form_table for the device, direction, mode and nearest calibrated
length; without a measurement the training default), the chunk size for a length (``chunk_size=None``:
the size measured fastest), and capability checks at construction."""

from __future__ import annotations

import json

import pytest
import torch

from trevo.bench import form_table
from trevo.components.base import state_nbytes, trace_form_lookup_as_constant
from trevo.errors import IncompatibleError
from trevo.registry import build, create


@pytest.fixture
def no_tables(tmp_path, monkeypatch):
    """No measured table anywhere: auto keeps the declared order."""
    monkeypatch.setattr(form_table, "SHIPPED", tmp_path / "none.json")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("TREVO_FORM_TABLE", raising=False)
    form_table.reload()
    yield
    form_table.reload()



def test_state_bytes_count_every_nested_tensor():
    assert state_nbytes({"a": torch.zeros(4, dtype=torch.float64), "b": [torch.zeros(2)]}) == 40
    assert state_nbytes(None) == 0 and state_nbytes({"pos": 3}) == 0


def test_an_unknown_form_is_refused_naming_the_forms():
    with pytest.raises(IncompatibleError, match="has no form 'parallel'; its forms are: auto, chunk, quadratic"):
        create("mixer", "gla", d_model=16, causal=True, form="parallel")


def test_auto_is_the_training_default_except_a_recurrent_one_token_step(no_tables):
    gla = create("mixer", "gla", d_model=16, causal=True)
    assert gla.form_for(1) == "recurrent" and gla.form_for(50) == gla.forms[0] == "chunk"
    assert create("mixer", "gla", d_model=16, causal=True, form="quadratic").form_for(1) == "quadratic"
    attention = create("mixer", "softmax_attention", d_model=16, causal=True)
    assert attention.form_for(1) == attention.form_for(50) == "sdpa"  # no recurrent form
    assert create("mixer", "linformer", d_model=16, causal=False).form_for(8) == ""  # a single form


def test_the_other_direction_is_refused_at_construction():
    with pytest.raises(IncompatibleError, match="'gla' is causal only"):
        create("mixer", "gla", d_model=16, causal=False)
    with pytest.raises(IncompatibleError, match="'fnet' is bidirectional only"):
        create("mixer", "fnet", d_model=16, causal=True)


def test_generation_is_refused_for_a_bidirectional_mixer():
    mixer = create("mixer", "softmax_attention", d_model=16, causal=False)
    with pytest.raises(IncompatibleError, match="causal=False; prefill is only defined for causal mixers"):
        mixer.prefill(torch.randn(1, 3, 16))
    with pytest.raises(IncompatibleError, match="step is only defined"):
        mixer.step(torch.randn(1, 16), {})


@pytest.fixture
def table(tmp_path, monkeypatch):
    def write(choices):
        path = tmp_path / "table.json"
        path.write_text(json.dumps({"meta": {}, "choices": {"cpu": choices}}))
        monkeypatch.setenv("TREVO_FORM_TABLE", str(path))
        form_table.reload()
        return path

    yield write
    form_table.reload()


def _lru(**options):
    return build("mixer", "lru", {"d_state": 4, **options}, d_model=8, causal=True)


def test_auto_follows_the_measured_table_by_length_and_mode(table):
    table({"lru": {"causal": {
        "fwdbwd": [{"length": 64, "form": "recurrent"}, {"length": 1024, "form": "chunk"}],
        "fwd": [{"length": 64, "form": "chunk"}, {"length": 1024, "form": "recurrent"}]}}})
    mixer = _lru()
    assert mixer.form_for(50) == "recurrent" and mixer.form_for(2048) == "chunk"
    # the nearer calibrated length on a log scale: the midpoint of 64 and 1024 is √(64·1024) = 256
    assert mixer.form_for(200) == "recurrent" and mixer.form_for(300) == "chunk"
    with torch.no_grad():
        assert mixer.form_for(50) == "chunk" and mixer.form_for(2048) == "recurrent"
        assert mixer.form_for(2049) == "chunk"  # beyond twice the longest measurement: the declared order
    assert mixer.form_for(1) == "recurrent"  # a causal step is always recurrent
    assert _lru(form="chunk").form_for(50) == "chunk"  # an explicit form is never overridden


def test_without_a_measurement_auto_keeps_the_declared_order(no_tables, table):
    table({"mamba": {"causal": {"fwdbwd": [{"length": 64, "form": "recurrent"}]}}})
    assert _lru().form_for(100) == "chunk"  # lru is not in the table: its first form
    # a table naming a form the mixer does not have is ignored
    table({"lru": {"causal": {"fwdbwd": [{"length": 64, "form": "parallel"}]}}})
    assert _lru().form_for(100) == "chunk"


def test_chunk_size_none_takes_the_measured_size_and_reaches_the_op(no_tables, table, monkeypatch):
    table({"rwkv6": {"causal": {"fwdbwd": [{"length": 64, "form": "recurrent", "chunk_size": 8},
                                           {"length": 1024, "form": "chunk", "chunk_size": 32}]}}})
    mixer = create("mixer", "rwkv6", d_model=16, causal=True, n_heads=2)
    assert mixer.chunk_size is None
    assert mixer.chunk_size_for(50) == 8 and mixer.chunk_size_for(2048) == 32
    assert mixer.chunk_size_for(10 ** 6) == 32  # the size holds past twice the longest measurement
    with torch.no_grad():
        assert mixer.chunk_size_for(50) == type(mixer).default_chunk_size == 64  # no fwd measurement
    assert create("mixer", "rwkv6", d_model=16, causal=True, n_heads=2, chunk_size=4).chunk_size_for(50) == 4

    import trevo.components.mixers.rwkv6 as rwkv6

    seen = []

    def spy(*args, chunk_size, **kwargs):
        seen.append((kwargs["form"], chunk_size))
        return recurrence(*args, chunk_size=chunk_size, **kwargs)

    recurrence = rwkv6.linear_recurrence
    monkeypatch.setattr(rwkv6, "linear_recurrence", spy)
    mixer.form = "chunk"
    x = torch.randn(1, 40, 16)
    y = mixer(x)
    assert seen == [("chunk", 8)]
    reference = create("mixer", "rwkv6", d_model=16, causal=True, n_heads=2, form="recurrent")
    reference.load_state_dict(mixer.state_dict())
    torch.testing.assert_close(y, reference(x), rtol=1e-4, atol=1e-5)  # a chunk size changes only the time


@pytest.mark.parametrize("mixer, options", [("gla", []), ("mamba2", ["model.mixer.head_dim=8"]), ("retnet", [])])
def test_a_compiled_block_reads_the_form_table_without_a_graph_break(mixer, options, table):
    """``form="auto"`` under torch.compile: the block traces as one graph (``fullgraph=True``: the table
    lookup is a constant of the trace, not a file read inside it, which broke a GLA block's graph 6
    times), picks the form eager picks (the table's quadratic at 12 tokens, not the default chunk), and
    its output and gradients are eager's to 1e-5 (aot_eager: the traced graph itself, without
    inductor's reordered sums)."""
    from trevo.config import RunConfig
    from trevo.train import build as build_run

    table({mixer: {"causal": {"fwdbwd": [{"length": 12, "form": "quadratic"}]}}})
    cfg = RunConfig().override([f"model.mixer.name={mixer}", "model.d_model=16", "model.n_layers=1",
                                "task.seq_len=12", *options])
    _, model = build_run(cfg)
    block = model.blocks[0]
    x = torch.randn(2, 12, 16)
    chosen, form_for = [], block.mixer.form_for

    def noted(seq_len):  # the compiled graph replays this append: it shows the form the trace took
        chosen.append(form_for(seq_len))
        return chosen[-1]

    block.mixer.form_for = noted
    trace_form_lookup_as_constant()  # as trevo.train.compile_blocks does
    compiled = torch.compile(block, backend="aot_eager", fullgraph=True)  # a graph break is an error
    eager_out, compiled_out = block(x), compiled(x)
    assert chosen == ["quadratic", "quadratic"]
    assert torch.allclose(compiled_out, eager_out, atol=1e-5)
    eager_grads = torch.autograd.grad(eager_out.square().mean(), list(block.parameters()))
    compiled_grads = torch.autograd.grad(compiled_out.square().mean(), list(block.parameters()))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(eager_grads, compiled_grads, strict=True))


def test_importing_trevo_does_not_import_dynamo_or_triton():
    """The compile-time marking waits for a compile: an import of torch._dynamo (and with it Triton) at
    ``import trevo`` doubles its import time and defines Triton's library before TRITON_INTERPRET is set."""
    import subprocess
    import sys

    code = "import sys, trevo, trevo.train; print('torch._dynamo' in sys.modules, 'triton' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
