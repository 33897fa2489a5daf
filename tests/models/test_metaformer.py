"""The MetaFormer backbone: incompatible combinations fail at build time, relative positions build and
run, bad token ids and sequences past a fixed length are clear errors."""

from __future__ import annotations

import pytest
import torch

from trevo.config import ConfigError
from trevo.errors import IncompatibleError, TrevoError
from trevo.models import build_model
from trevo.tasks.base import TaskInfo
from trevo.train import build


def test_incompatible_combinations_fail_at_build_time(tiny_cfg):
    with pytest.raises(IncompatibleError, match="accepts no relative position"):
        build(tiny_cfg("model.mixer.name=rwkv4", "model.position.name=rope"))
    with pytest.raises(IncompatibleError, match="raise model.max_len"):
        build(tiny_cfg("model.position.name=learned", "model.max_len=16"))
    with pytest.raises(ConfigError, match="model.block was replaced by model.residual"):
        build(tiny_cfg("model.block=sandwich"))
    masked = TaskInfo(vocab_size=256, head="mlm", seq_len=16, causal="forbidden")
    cfg = tiny_cfg("model.mixer.name=rwkv4").model
    with pytest.raises(IncompatibleError, match=r"causal only .* `trevo list --capability bidirectional` lists"):
        build_model(cfg, masked)
    with pytest.raises(IncompatibleError, match="set by the model"):
        build(tiny_cfg("model.mixer.d_model=8"))


def test_relative_positions_build_and_run(tiny_cfg):
    for pos in ("rope", "alibi", "sinusoidal", "learned"):
        _, model = build(tiny_cfg(f"model.position.name={pos}"))
        assert model(torch.zeros(2, 32, dtype=torch.long)).shape == (2, 32, 256)


def test_bad_model_inputs(tiny_cfg):
    _, model = build(tiny_cfg())
    with pytest.raises(TrevoError, match="integer dtype"):
        model(torch.zeros(2, 8))
    with pytest.raises(TrevoError, match=r"token ids must lie in \[0, 256\)"):
        model(torch.full((2, 8), 300))


def test_sequence_past_a_fixed_length_is_refused(tiny_cfg):
    _, model = build(tiny_cfg("model.position.name=learned", "model.max_len=32"))
    with pytest.raises(TrevoError, match="past the learned position table"):
        model(torch.zeros(1, 40, dtype=torch.long))


def test_a_position_that_widens_the_input_is_refused_at_build(tiny_cfg):
    with pytest.raises(IncompatibleError, match="set model.position.combine=add"):
        build(tiny_cfg("model.position.name=fourier"))
    _, model = build(tiny_cfg("model.position.name=fourier", "model.position.combine=add"))
    assert model(torch.zeros(2, 32, dtype=torch.long)).shape == (2, 32, 256)
