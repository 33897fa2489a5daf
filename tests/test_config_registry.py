"""Configs and the registry: round trips, overrides, and a clear error for every bad input."""

from __future__ import annotations

import pytest
import torch

from trevo.config import ConfigError, RunConfig
from trevo.models import build_model
from trevo.registry import IncompatibleError, TrevoError, UnknownComponentError, create, get
from trevo.tasks.base import TaskInfo
from trevo.train import build


def test_yaml_round_trip_and_overrides(tmp_path):
    cfg = RunConfig().override(["model.mixer.name=rwkv4", "model.mixer.chunk_size=16", "train.lr=3e-3",
                                "model.channel=rwkv4_channel", "task.seq_len=128"])
    assert cfg.model.mixer.name == "rwkv4" and cfg.model.mixer.options == {"chunk_size": 16}
    assert cfg.train.lr == pytest.approx(3e-3) and cfg.task.options == {"seq_len": 128}
    cfg.save(tmp_path / "c.yaml")
    again = RunConfig.load(tmp_path / "c.yaml")
    assert again == cfg and again.hash() == cfg.hash()
    assert RunConfig().hash() != cfg.hash()


@pytest.mark.parametrize("override,message", [
    (["train.stepz=3"], "unknown field 'stepz'"),
    (["train.steps=many"], "expected int"),
    (["nonsense"], "dotted.key=value"),
    (["train.steps.x=1"], "is not a section"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig().override(override)


def test_bad_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        RunConfig.load(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        RunConfig.load(tmp_path / "bad.yaml")
    (tmp_path / "evil.yaml").write_text("model: !!python/object/apply:os.system ['echo hi']")
    with pytest.raises(ConfigError):  # the safe loader refuses to construct objects
        RunConfig.load(tmp_path / "evil.yaml")


def test_unknown_component_names_the_valid_choices(tiny_cfg):
    with pytest.raises(UnknownComponentError, match="Did you mean .*'rwkv4'") as e:
        build(tiny_cfg("model.mixer.name=rwkv"))
    assert "softmax_attention" in str(e.value)
    with pytest.raises(UnknownComponentError, match="unknown channel 'swishglu'"):
        build(tiny_cfg("model.channel.name=swishglu"))
    with pytest.raises(IncompatibleError, match="its options are"):
        create("mixer", "softmax_attention", d_model=8, causal=True, n_head=2)


def test_incompatible_combinations_fail_at_build_time(tiny_cfg):
    with pytest.raises(IncompatibleError, match="accepts no relative position"):
        build(tiny_cfg("model.mixer.name=rwkv4", "model.position.name=rope"))
    with pytest.raises(IncompatibleError, match="raise model.max_len"):
        build(tiny_cfg("model.position.name=learned", "model.max_len=16"))
    with pytest.raises(IncompatibleError, match="model.block"):
        build(tiny_cfg("model.block=sandwich"))
    masked = TaskInfo(vocab_size=256, head="mlm", seq_len=16, causal="forbidden")
    cfg = tiny_cfg("model.mixer.name=rwkv4").model
    with pytest.raises(IncompatibleError, match="causal only .* bidirectional mixers: .*softmax_attention"):
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


def test_registry_entries_carry_metadata():
    e = get("mixer", "rwkv4")
    assert e.paper.arxiv == "2305.13048" and e.recurrent and not e.bidirectional
    assert "recurrent" in e.capabilities() and e.to_dict()["forms"] == ["chunk", "parallel", "recurrent"]
